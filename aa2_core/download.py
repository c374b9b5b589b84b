"""``python -m aa2_core download``: fetch the public model files a set needs into ComfyUI's models folder.

    python -m aa2_core download --models ComfyUI/models                      # Moore set (every example workflow)
    python -m aa2_core download --models ComfyUI/models --set animate-x       # the released Animate-X files
    python -m aa2_core download --models ComfyUI/models --set all --with sam2,dwpose,depth
    python -m aa2_core download --models ComfyUI/models --list                # what would be fetched, offline

Files come from the Hugging Face Hub through ``huggingface_hub`` (``HF_ENDPOINT`` and your token, ``HF_TOKEN``
or ``hf auth login``, are respected; its progress bar shows). Each file is checked against the sha256 the
manifest (``aa2_core/model_manifest.py``) pins, else against the sha256 the hub reports for it (its Git LFS
object id), else by reading it; a file that does not match is refused, named, and nothing is written for it.
A download that stops keeps its bytes in ``<models>/.aa2_download/`` and the next run resumes from there.
Files already present and verified are skipped (a second run makes no request). Released bytes are kept as
they are (the loaders read the pickles with ``weights_only=True``) except the image encoder, stored as the
``.safetensors`` the workflows name. With the Moore set, ``check`` runs at the end.

The pack downloads nothing at import or run time: only this command does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys

from .atomic import atomic_path, write_text
from .errors import AA2Error
from .model_manifest import EXTRAS, MANIFEST, SETS, SHA256, ModelEntry, load_json, select

STAGING = ".aa2_download"  # under the models folder: partial downloads and the record of verified files
RECORD = "verified.json"
CHUNK = 16 << 20


class Refused(AA2Error):
    """A file that was not written (or not replaced), with the reason."""


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


class Downloader:
    """Makes each entry's target present and verified; one instance per run (hub answers are cached)."""

    def __init__(self, models_dir: str, force: bool = False, log=print):
        self.models = os.path.abspath(models_dir)
        self.staging = os.path.join(self.models, STAGING)
        self.force = force
        self.log = log
        self._meta: dict[str, object] = {}
        self.records = self._load_records()

    # ---- public ----------------------------------------------------------------------------------
    def ensure(self, entry: ModelEntry) -> str:
        """'fetched', 'present' or 'converted'; raises :class:`Refused` naming the file otherwise."""
        target = self.path(entry)
        if os.path.lexists(target) and not self.force:
            return self._check_present(entry, target)
        self._fetch(entry, target)
        return "fetched"

    def path(self, entry: ModelEntry) -> str:
        return os.path.join(self.models, *entry.target.split("/"))

    # ---- present files ---------------------------------------------------------------------------
    def _check_present(self, entry: ModelEntry, target: str) -> str:
        if os.path.isdir(target):
            raise Refused(f"{target} is a folder; expected the file {entry.name} ({entry.role})")
        if self._recorded(entry, target):
            return "present"
        if entry.convert:
            return self._check_converted(entry, target)
        expected, where = self._expected(entry, required=False)
        if expected is None:
            self._verify_by_reading(entry, target)
            self._record(entry, target, None)
            return "present"
        actual = sha256_file(target)
        if actual != expected:
            raise self._kept_mismatch(entry, target, actual, expected, where)
        self._record(entry, target, actual)
        return "present"

    def _check_converted(self, entry: ModelEntry, target: str) -> str:
        from .checkpoints.io import read_metadata

        try:
            stated = read_metadata(target).get("aa2_source_sha256")
        except Exception:  # not a safetensors file: perhaps the released pickle saved under this name
            stated = None
        expected, where = self._expected(entry, required=True)
        if stated is not None:
            if stated != expected:
                raise self._kept_mismatch(entry, target, f"{stated} (converted from)", expected, where)
            self._record(entry, target, stated)
            return "present"
        actual = sha256_file(target)
        if actual != expected:
            raise self._kept_mismatch(entry, target, actual, expected, where)
        # the released pickle under the .safetensors name (e.g. from the frontend's Download button): convert it
        moved = os.path.join(self._staging_dir(), f"{entry.key}.{actual[:16]}.incomplete{os.path.splitext(entry.path)[1]}")
        os.replace(target, moved)
        self._install(entry, moved, target, actual)
        return "converted"

    def _kept_mismatch(self, entry, target, actual, expected, where) -> Refused:
        return Refused(f"{target} is not the released {entry.role}: its sha256 is {actual}, expected {expected} "
                       f"({where}); it was kept. Move it away and run the command again, or add --force to replace it")

    # ---- fetching --------------------------------------------------------------------------------
    def _fetch(self, entry: ModelEntry, target: str) -> None:
        meta = self._hub(entry)
        hub_sha = meta.etag if meta.etag and SHA256.fullmatch(meta.etag) else None
        if entry.sha256 and hub_sha and hub_sha != entry.sha256:
            raise Refused(f"{entry.source}: the hub reports sha256 {hub_sha}, the manifest expects {entry.sha256}; "
                          f"nothing was downloaded and {target} was not written")
        expected = entry.sha256 or hub_sha
        staged = self._download(entry, entry.path, meta, expected)
        actual = sha256_file(staged)
        if expected and actual != expected:
            os.remove(staged)  # wrong bytes are not kept for a resume
            where = "the manifest" if entry.sha256 else "the sha256 the hub reports for it"
            raise Refused(f"refused {entry.source}: the downloaded bytes have sha256 {actual}, expected {expected} "
                          f"({where}); {target} was not written")
        if not expected:
            self._verify_by_reading(entry, staged)
        self._install(entry, staged, target, actual)

    def _download(self, entry: ModelEntry, path: str, meta, expected: str | None) -> str:
        """The hub file's bytes in a staging file, resumed from an earlier partial one if present."""
        from huggingface_hub.file_download import hf_hub_url, http_get
        from huggingface_hub.utils import build_hf_headers

        tag = (expected or meta.etag or "unknown")[:16]
        # the extension stays last: the readers pick the format by it
        staged = os.path.join(self._staging_dir(), f"{entry.key}.{tag}.incomplete{os.path.splitext(path)[1]}")
        resume = os.path.getsize(staged) if os.path.isfile(staged) else 0
        if meta.size is not None and resume > meta.size:
            os.remove(staged)
            resume = 0
        if resume:
            self.log(f"resume  {entry.target} from byte {resume}")
        url = hf_hub_url(entry.repo_id, path, revision=entry.revision)
        try:
            with open(staged, "ab") as f:
                http_get(url, f, resume_size=resume, headers=build_hf_headers(), expected_size=meta.size,
                         displayed_filename=entry.target if path == entry.path else path)
        except KeyboardInterrupt:
            raise
        except Exception as e:
            done = os.path.getsize(staged) if os.path.isfile(staged) else 0
            raise Refused(f"download of {entry.source} stopped after {done} bytes ({type(e).__name__}: {e}); "
                          "run the command again to resume") from e
        return staged

    def _install(self, entry: ModelEntry, staged: str, target: str, sha: str) -> None:
        """Move (or convert) verified bytes to the target; the target is whole or untouched."""
        if entry.convert:
            try:
                self._convert(entry, staged, target, sha)
            except AA2Error as e:
                raise Refused(f"{entry.source} could not be converted to safetensors ({e}); {target} was not written") from e
            finally:
                os.remove(staged)
        else:
            with atomic_path(target) as tmp:
                try:
                    os.replace(staged, tmp)
                except OSError:  # another file system (a linked models folder): copy instead
                    shutil.copyfile(staged, tmp)
                    os.remove(staged)
        self._record(entry, target, sha)

    def _convert(self, entry: ModelEntry, staged: str, target: str, sha: str) -> None:
        from .checkpoints.io import read_state_dict, write_safetensors

        metadata = {"converted_from": entry.path, "aa2_source": entry.source, "aa2_source_sha256": sha}
        for companion in entry.companions:  # the image encoder's config.json: its head count goes in the metadata
            config = self._companion(entry, companion)
            if "num_attention_heads" in config:
                metadata["num_attention_heads"] = str(config["num_attention_heads"])
        state = read_state_dict(staged, f"{entry.role} ({entry.source})")
        write_safetensors(state, target, metadata)

    def _companion(self, entry: ModelEntry, path: str) -> dict:
        from dataclasses import replace

        part = replace(entry, key=f"{entry.key}-companion")
        staged = self._download(part, path, self._hub(entry, path), None)
        try:
            with open(staged) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise Refused(f"{entry.repo_id}:{path} is not a JSON file ({e}); {self.path(entry)} was not written") from e
        finally:
            os.remove(staged)

    # ---- what the hub says -----------------------------------------------------------------------
    def _hub(self, entry: ModelEntry, path: str | None = None):
        from huggingface_hub import constants
        from huggingface_hub.file_download import get_hf_file_metadata, hf_hub_url

        path = path or entry.path
        key = f"{entry.repo_id}@{entry.revision}:{path}"
        if key not in self._meta:
            if constants.is_offline_mode():
                raise Refused(f"{entry.source}: HF_HUB_OFFLINE is set, so nothing can be fetched or checked with the "
                              f"hub; unset it to download {entry.target}")
            try:
                self._meta[key] = get_hf_file_metadata(hf_hub_url(entry.repo_id, path, revision=entry.revision))
            except Exception as e:
                raise Refused(f"could not reach {entry.source} on {constants.ENDPOINT} ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); {entry.target} was not fetched") from e
        return self._meta[key]

    def _expected(self, entry: ModelEntry, required: bool) -> tuple[str | None, str]:
        if entry.sha256:
            return entry.sha256, "the manifest"
        meta = self._hub(entry)
        if meta.etag and SHA256.fullmatch(meta.etag):
            return meta.etag, "the sha256 the hub reports for it"
        if required:
            raise Refused(f"{entry.source}: the hub reports no sha256 for this file, so {entry.target} cannot be checked")
        return None, "read"

    def _verify_by_reading(self, entry: ModelEntry, path: str) -> None:
        """No sha256 anywhere (small non-LFS files): the file must at least read as what it is."""
        try:
            if entry.name.endswith(".json"):
                with open(path) as f:
                    json.load(f)
            else:
                from .checkpoints.io import read_state_dict

                read_state_dict(path, entry.role)
        except (OSError, ValueError) as e:
            raise Refused(f"{entry.source} does not read as a {os.path.splitext(entry.name)[1]} file ({e}); "
                          f"{self.path(entry)} was not written") from e

    # ---- the record of verified files ------------------------------------------------------------
    def _staging_dir(self) -> str:
        os.makedirs(self.staging, exist_ok=True)
        return self.staging

    def _load_records(self) -> dict:
        try:
            with open(os.path.join(self.staging, RECORD)) as f:
                records = json.load(f)
            return records if isinstance(records, dict) else {}
        except (OSError, ValueError):
            return {}

    def _recorded(self, entry: ModelEntry, target: str) -> bool:
        rec, st = self.records.get(entry.target), os.stat(target)
        return bool(rec) and rec.get("source") == entry.source and rec.get("size") == st.st_size \
            and rec.get("mtime_ns") == st.st_mtime_ns and (entry.sha256 is None or rec.get("sha256") == entry.sha256)

    def _record(self, entry: ModelEntry, target: str, sha: str | None) -> None:
        st = os.stat(target)
        self.records[entry.target] = {"source": entry.source, "sha256": sha, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        write_text(os.path.join(self._staging_dir(), RECORD), json.dumps(self.records, indent=1, sort_keys=True))


def parse_extras(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    items = [t.strip() for t in text.split(",") if t.strip()]
    return EXTRAS if items == ["all"] else tuple(items)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aa2_core download", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:6]))
    parser.add_argument("--models", required=True, help="ComfyUI's models folder (e.g. ComfyUI/models)")
    parser.add_argument("--set", default="moore", choices=SETS + ("all", "none"),
                        help="moore: every example workflow's files (default); animate-x: the released Animate-X files; all: both; "
                             "none: only the --with extras")
    parser.add_argument("--with", dest="extras", metavar="EXTRAS",
                        help=f"comma list of optional extras: {', '.join(EXTRAS)} (or all)")
    parser.add_argument("--list", action="store_true", help="print what the set holds (URL, target, sha256) and fetch nothing")
    parser.add_argument("--force", action="store_true", help="replace present files that differ from the released ones")
    parser.add_argument("--no-check", action="store_true", help="do not run check after fetching the Moore set")
    parser.add_argument("--manifest", help="a JSON manifest to use instead of the built-in one (a mirror's, or a test's)")
    args = parser.parse_args(argv)

    try:
        manifest = load_json(args.manifest) if args.manifest else MANIFEST
        entries = select(args.set, parse_extras(args.extras), manifest)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if os.path.exists(args.models) and not os.path.isdir(args.models):
        print(f"error: --models {args.models} is a file; expected ComfyUI's models folder")
        return 1
    if not os.path.isdir(args.models):
        print(f"error: --models {args.models} does not exist; expected ComfyUI's models folder (e.g. ComfyUI/models)")
        return 1
    if args.list:
        for e in entries:
            print(f"{e.target}\n    {e.url}\n    sha256 {e.sha256 or '(the hub reports it)'}{'  (converted to safetensors)' if e.convert else ''}")
        return 0
    if not entries:
        print("nothing to fetch: give --set moore|animate-x|all and/or --with " + ",".join(EXTRAS))
        return 2

    loader = Downloader(args.models, force=args.force)
    counts, refused = {"fetched": 0, "present": 0, "converted": 0}, []
    try:
        for entry in entries:
            print(f"{'fetch' if not os.path.lexists(loader.path(entry)) else 'check'}   {entry.target}  <- {entry.source}", flush=True)
            try:
                status = loader.ensure(entry)
            except Refused as e:
                refused.append(str(e))
                print(f"REFUSED {entry.target}: {e}", flush=True)
                continue
            counts[status] += 1
            print(f"{status:7s} {entry.target}", flush=True)
    except KeyboardInterrupt:
        print(f"\ndownload: interrupted; partial downloads stay in {loader.staging} and the same command resumes them",
              file=sys.stderr)
        return 130
    print(f"{counts['fetched']} fetched, {counts['converted']} converted, {counts['present']} already present, "
          f"{len(refused)} refused (models folder: {loader.models})")
    if refused:
        print("refused:\n  " + "\n  ".join(refused))
        return 1
    if "moore" in ({args.set} if args.set != "all" else set(SETS)) and not args.no_check:
        return _run_check(loader.models)
    return 0


def _run_check(models_dir: str) -> int:
    from .check import print_check

    print("check: loading every Moore-set file and running one denoising step", flush=True)
    return print_check(models_dir)

"""The command line's own modules (``python -m aa2_core animate``): argument parsing, reading and writing files,
and the run itself over the library; nothing below imports them."""

"""Thin ComfyUI node classes over ``aa2_core``."""

from .animate_x import AA2ImplicitPoseIndicator
from .animate_x_family import AA2AnimateXImplicitPose, AA2AnimateXLoader, AA2AnimateXReference
from .conditioning import AA2ColorMatchClips, AA2PoseCondition, AA2ReferenceNet, AA2StitchingOptions
from .environment import AA2CompositeEnvironment, AA2EnvironmentMask, AA2ObjectGuider
from .loaders import AA2ModelLoader
from .pose import AA2DWPoseExtract, AA2LoadPoseKeypoints, AA2RenderPose, AA2RetargetPose
from .sam2 import AA2SAM2Loader, AA2SAM2SegmentVideo
from .sampler import AA2Sampler

NODE_CLASS_MAPPINGS = {
    "AA2ModelLoader": AA2ModelLoader,
    "AA2ReferenceNet": AA2ReferenceNet,
    "AA2PoseCondition": AA2PoseCondition,
    "AA2StitchingOptions": AA2StitchingOptions,
    "AA2Sampler": AA2Sampler,
    "AA2LoadPoseKeypoints": AA2LoadPoseKeypoints,
    "AA2RetargetPose": AA2RetargetPose,
    "AA2RenderPose": AA2RenderPose,
    "AA2DWPoseExtract": AA2DWPoseExtract,
    "AA2EnvironmentMask": AA2EnvironmentMask,
    "AA2ObjectGuider": AA2ObjectGuider,
    "AA2CompositeEnvironment": AA2CompositeEnvironment,
    "AA2ColorMatchClips": AA2ColorMatchClips,
    "AA2SAM2Loader": AA2SAM2Loader,
    "AA2SAM2SegmentVideo": AA2SAM2SegmentVideo,
    "AA2ImplicitPoseIndicator": AA2ImplicitPoseIndicator,
    "AA2AnimateXLoader": AA2AnimateXLoader,
    "AA2AnimateXReference": AA2AnimateXReference,
    "AA2AnimateXImplicitPose": AA2AnimateXImplicitPose,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "AA2ModelLoader": "AA2 Model Loader (Animate Anyone)",
    "AA2ReferenceNet": "AA2 ReferenceNet",
    "AA2PoseCondition": "AA2 Pose Condition",
    "AA2StitchingOptions": "AA2 Stitching Options",
    "AA2Sampler": "AA2 Sampler",
    "AA2LoadPoseKeypoints": "AA2 Load Pose Keypoints (JSON)",
    "AA2RetargetPose": "AA2 Retarget Pose",
    "AA2RenderPose": "AA2 Render Pose",
    "AA2DWPoseExtract": "AA2 DWPose Extract (onnxruntime)",
    "AA2EnvironmentMask": "AA2 Environment Mask (shape-agnostic)",
    "AA2ObjectGuider": "AA2 Object Guider",
    "AA2CompositeEnvironment": "AA2 Composite Environment",
    "AA2ColorMatchClips": "AA2 Color Match Clips",
    "AA2SAM2Loader": "AA2 SAM2 Loader",
    "AA2SAM2SegmentVideo": "AA2 SAM2 Segment Video",
    "AA2ImplicitPoseIndicator": "AA2 Implicit Pose Indicator (Animate-X)",
    "AA2AnimateXLoader": "AA2 Animate-X Loader (released weights)",
    "AA2AnimateXReference": "AA2 Animate-X Reference",
    "AA2AnimateXImplicitPose": "AA2 Animate-X Implicit Pose",
}

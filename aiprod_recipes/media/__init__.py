"""Media I/O for ingest: probing, decoding, encoding, scene cuts and the sample dataset.

Everything goes through PyAV (FFmpeg) so that probing, decoding and encoding agree on
codecs and timestamps; PySceneDetect is used only for cut detection.
"""

from aiprod_recipes.media.audio import decode_audio
from aiprod_recipes.media.encode import encode_mp4
from aiprod_recipes.media.errors import MediaError
from aiprod_recipes.media.probe import MediaInfo, check_frame_size, probe
from aiprod_recipes.media.report import DecodeReport
from aiprod_recipes.media.scenes import detect_scenes, split_long
from aiprod_recipes.media.video import decode_frames, iter_frames

__all__ = [
    "DecodeReport",
    "MediaError",
    "MediaInfo",
    "check_frame_size",
    "decode_audio",
    "decode_frames",
    "detect_scenes",
    "encode_mp4",
    "iter_frames",
    "probe",
    "split_long",
]

"""Media I/O: probing, decoding, encoding, scene cuts, buckets, Canny references and the
sample dataset.

Everything goes through PyAV (FFmpeg) so that probing, decoding and encoding agree on
codecs and timestamps; PySceneDetect is used only for cut detection. Nothing is imported
here: a stage that only encodes does not pay for PySceneDetect, so import the module you
need (``aiprod_recipes.media.video``, ``.encode``, ...).
"""

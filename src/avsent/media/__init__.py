"""Decoding media files (audio here, video frames in :mod:`avsent.media.video`) in-process."""

"""The video front-end after decoding: face tracks, crops and landmark geometry."""

"""The paper's seven emotion classes, in the paper's order."""

EMOTIONS: tuple[str, ...] = ("sad", "angry", "surprise", "fear", "happy", "disgusted", "neutral")

"""Reading, detecting, converting and writing checkpoints."""

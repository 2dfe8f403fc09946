"""UniPixel in PyTorch (Qwen2.5-VL + SAM 2.1 + visual prompts + memory), with no ROS imports."""

"""Training a small UniPixel on synthetic scenes: data formatting, losses, differentiable SAM 2, trainer."""

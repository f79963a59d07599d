"""Hand-made findings summaries at two scales, for the decision-accuracy tests."""

import pandas as pd

# Mean specialist loss per target and mixer at each scale.
SMALL = {"A": {"uniform": 3.0, "importance": 2.9, "dga": 2.8}, "B": {"uniform": 3.0, "dga": 2.5}}
LARGE = {"A": {"uniform": 2.5, "importance": 2.6, "dga": 2.3}, "B": {"uniform": 2.9, "dga": 2.4}}


def summary(means: dict, noise=(0.0, 0.0, 0.0)) -> pd.DataFrame:
    """Runs of seeds 0-2 around the given means; accuracy = 10 - loss (the same order)."""
    rows = [
        {
            "target": target,
            "mixer_label": mixer,
            "seed": seed,
            "status": "completed",
            "target_loss": loss + noise[seed],
            "mmlu/acc": 10 - loss - noise[seed],
        }
        for target, losses in means.items()
        for mixer, loss in losses.items()
        for seed in range(3)
    ]
    return pd.DataFrame(rows)

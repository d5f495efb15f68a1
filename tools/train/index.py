#!/usr/bin/env python3
"""Rebuild models/mnist/README.md, the index of the model cards: python3 tools/train/index.py"""

import glob
import os
import re

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def main():
    rows = []
    for card in sorted(glob.glob(os.path.join(REPO, "models", "mnist", "*.md"))):
        name = os.path.basename(card)[:-3]
        if name == "README":
            continue
        text = open(card).read()
        held = re.search(r"^\| held-out[^|]*\| ([^|]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|", text, re.M)
        test = re.search(r"^\| official test images[^|]*\| ([^|]+) \|", text, re.M)
        epochs = re.search(r"epochs (\d+)", text)
        lr = re.search(r"Adadelta, lr ([0-9.]+)", text)
        secs = re.search(r"training time: (\d+) s", text)
        init = "natural weights" if "initialisation: the weights" in text else "random"
        cells = [c.strip() for c in held.groups()] if held else ["?"] * 4
        rows.append(f"| [`{name}`]({name}.md) | {epochs.group(1) if epochs else '?'} | {lr.group(1) if lr else '?'} "
                    f"| {init} | {secs.group(1) if secs else '?'} | {' | '.join(cells)} | "
                    f"{test.group(1).strip() if test else '?'} |")
    out = os.path.join(REPO, "models", "mnist", "README.md")
    with open(out, "w") as f:
        f.write("""# MNIST models

Trained by `tools/train/train.py` (PyTorch, run by hand, never in CI) on the 8,000 digits of `data/mnist/train.npz`;
architectures in `tools/train/nets.py` (paper Table 6). Weights are float32 safetensors whose tensor names are the
PyTorch module names (`conv1.weight`, ..., `fc2.bias`); inputs are in [0, 1] with no normalisation. Each model has a
card `<name>.md` with the recipe, hyper-parameters, command, training log and sha256. Accuracies are on the held-out
digits (`data/mnist/heldout.npz`; PGD is sample-wise, an upper bound on robust accuracy; see each card for the
number of digits and steps) and on the 20 official test images (`data/mnist/test20.npz`).

| model | epochs | Adadelta lr | init | train s | clean | PGD 8/255 | PGD 16/255 | PGD 32/255 | test20 |
|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + "\n\nRegenerate this table with `python3 tools/train/index.py`.\n")
    print(f"wrote {out} ({len(rows)} models)")


if __name__ == "__main__":
    main()

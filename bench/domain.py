"""Text images for the OCR and layout models, made from the public-domain `text.png` sample.

The shared photos (bricks, a camera, the moon...) hold no text, so the text detector's
probability map is ~0 on most of them and the recognizer and line classifier see no line:
their cosine would measure noise. This writes, deterministically:

  lines/{calib,holdout}/  text-line crops (some turned 180 degrees), for cls and rec
  pages/{calib,holdout}/  page-like images: light paper with 2-4 pasted text crops, for det and layout

Calibration crops come from the left half of text.png, held-out crops from the right half, so
no pixel of a held-out image was seen in calibration. Every crop holds some ink (2% of its
pixels darker than 90 of 255): a crop of bare paper gives the detector nothing to find.

    python bench/domain.py IMAGES_DIR OUT_DIR
"""
import os
import sys

import numpy as np
from PIL import Image


def crops(src, rng, n, aspect, half):
    w, h = src.size
    x0, x1 = (0, w // 2) if half == 0 else (w // 2, w)
    out = []
    while len(out) < n:
        ch = int(rng.integers(h // 4, h // 2))
        cw = min(int(ch * aspect), x1 - x0)
        x = int(rng.integers(x0, x1 - cw + 1))
        y = int(rng.integers(0, h - ch + 1))
        c = src.crop((x, y, x + cw, y + ch))
        # Keep crops with ink in them: a crop of bare paper gives the detector nothing to find.
        if (np.asarray(c.convert("L")) < 90).mean() < 0.02:
            continue
        if rng.random() < 0.3:
            c = c.rotate(180)
        out.append(c)
    return out


def page(src, rng, half, size=(608, 800)):
    w, h = size
    tone = int(rng.integers(215, 250))
    p = Image.new("RGB", size, (tone, tone, tone - int(rng.integers(0, 12))))
    for c in crops(src, rng, int(rng.integers(2, 5)), 2.0, half):
        s = float(rng.uniform(1.5, 3.0))
        c = c.resize((max(1, int(c.width * s)), max(1, int(c.height * s))), Image.BILINEAR)
        x = int(rng.integers(0, max(1, w - c.width)))
        y = int(rng.integers(0, max(1, h - c.height)))
        p.paste(c, (x, y))
    return p


def main():
    images, out = sys.argv[1], sys.argv[2]
    src = Image.open(os.path.join(images, "text.png")).convert("RGB")
    for split, half, seed in (("calib", 0, 1), ("holdout", 1, 2)):
        rng = np.random.default_rng(seed)
        for kind in ("lines", "pages"):
            os.makedirs(os.path.join(out, kind, split), exist_ok=True)
        for i, c in enumerate(crops(src, rng, 8, 4.0, half)):
            c.save(os.path.join(out, "lines", split, f"line_{i}.png"))
        for i in range(8):
            page(src, rng, half).save(os.path.join(out, "pages", split, f"page_{i}.png"))


if __name__ == "__main__":
    main()

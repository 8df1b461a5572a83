"""Draw the preview image of every template in scripts/templates.json.

Pillow only: gradients, simple shapes and silhouettes that suggest each template's subject,
a soft glow here and there and a subtle vignette. Each scene is drawn at twice its size and
scaled down (anti-aliasing), then saved as WebP under static/previews/<slug>.webp.

    python scripts/make_previews.py            # all templates
    python scripts/make_previews.py car-commercial food-close-up
    python scripts/make_previews.py --png /tmp/previews   # also write PNG copies to look at

Deterministic: the same script always draws the same pictures.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "scripts" / "templates.json"
STATIC = ROOT / "static"

SS = 2  # supersampling factor
LANDSCAPE = (640, 360)
PORTRAIT = (360, 640)

Color = tuple[int, int, int] | tuple[int, int, int, int]
Point = tuple[float, float]


# --------------------------------------------------------------------------- helpers


def hex_rgb(value: str, alpha: int | None = None) -> Color:
    value = value.lstrip("#")
    rgb = tuple(int(value[i : i + 2], 16) for i in (0, 2, 4))
    return (*rgb, alpha) if alpha is not None else rgb  # type: ignore[return-value]


def mix(a: Sequence[int], b: Sequence[int], t: float) -> tuple[int, ...]:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=False))


class Canvas:
    """An RGBA image addressed in 'base' pixels (the final size), drawn at SS x."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.w, self.h = size
        self.img = Image.new("RGBA", (self.w * SS, self.h * SS), (0, 0, 0, 255))

    # coordinates ------------------------------------------------------------
    @staticmethod
    def s(v: float) -> int:
        return round(v * SS)

    def pts(self, points: Sequence[Point]) -> list[tuple[int, int]]:
        return [(self.s(x), self.s(y)) for x, y in points]

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        return (self.s(x0), self.s(y0), self.s(x1), self.s(y1))

    # layers -----------------------------------------------------------------
    def layer(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        lay = Image.new("RGBA", self.img.size, (0, 0, 0, 0))
        return lay, ImageDraw.Draw(lay)

    def paste(self, lay: Image.Image, blur: float = 0) -> None:
        if blur:
            lay = lay.filter(ImageFilter.GaussianBlur(blur * SS))
        self.img.alpha_composite(lay)

    def draw(self, fn: Callable[[ImageDraw.ImageDraw], None], blur: float = 0) -> None:
        lay, d = self.layer()
        fn(d)
        self.paste(lay, blur)

    # fills ------------------------------------------------------------------
    def vgradient(
        self,
        stops: Sequence[tuple[float, str]],
        box: tuple[float, float, float, float] | None = None,
        mask: Image.Image | None = None,
    ) -> None:
        """Vertical multi-stop gradient into box (base coords), optionally masked."""
        x0, y0, x1, y1 = box or (0, 0, self.w, self.h)
        bw, bh = max(1, self.s(x1 - x0)), max(1, self.s(y1 - y0))
        cols = [(p, hex_rgb(c)) for p, c in stops]
        column = Image.new("RGB", (1, bh))
        data = []
        for i in range(bh):
            t = i / max(1, bh - 1)
            for (p0, c0), (p1, c1) in zip(cols, cols[1:], strict=False):
                if t <= p1 or (p1 == cols[-1][0]):
                    u = 0 if p1 == p0 else min(1, max(0, (t - p0) / (p1 - p0)))
                    data.append(mix(c0, c1, u))
                    break
            else:
                data.append(cols[-1][1])
        column.putdata(data)
        tile = column.resize((bw, bh), Image.Resampling.NEAREST).convert("RGBA")
        if mask is not None:
            tile.putalpha(mask.crop((self.s(x0), self.s(y0), self.s(x0) + bw, self.s(y0) + bh)))
        self.img.alpha_composite(tile, (self.s(x0), self.s(y0)))

    def hgradient_shape(
        self,
        shape: Callable[[ImageDraw.ImageDraw], None],
        left: str,
        right: str,
        mid: str | None = None,
    ) -> None:
        """Fill a shape with a horizontal gradient (cylinder shading).

        `shape` draws on an "L" mask: give its shapes fill=255.
        """
        mask = Image.new("L", self.img.size, 0)
        shape(ImageDraw.Draw(mask))
        bbox = mask.getbbox()
        if not bbox:
            return
        x0, _, x1, _ = bbox
        width = x1 - x0
        row = Image.new("RGB", (width, 1))
        a, b = hex_rgb(left), hex_rgb(right)
        m = hex_rgb(mid) if mid else None
        pix = []
        for i in range(width):
            t = i / max(1, width - 1)
            if m is None:
                pix.append(mix(a, b, t))
            elif t < 0.35:
                pix.append(mix(a, m, t / 0.35))
            else:
                pix.append(mix(m, b, (t - 0.35) / 0.65))
        row.putdata(pix)
        fill = Image.new("RGBA", self.img.size, (0, 0, 0, 0))
        fill.paste(row.resize((width, self.img.size[1])).convert("RGBA"), (x0, 0))
        fill.putalpha(ImageChops.multiply(fill.getchannel("A"), mask))
        self.img.alpha_composite(fill)

    def glow(self, cx: float, cy: float, rx: float, ry: float, color: Color, blur: float) -> None:
        self.draw(
            lambda d: d.ellipse(self.box(cx - rx, cy - ry, cx + rx, cy + ry), fill=color), blur=blur
        )

    def vignette(self, strength: float = 0.55, tint: str = "#000000") -> None:
        grad = Image.radial_gradient("L").resize(self.img.size, Image.Resampling.BICUBIC)
        # radial_gradient is 0 at the centre, 255 at the rim: keep the middle clean.
        grad = grad.point(lambda v: int(max(0, (v - 110) / 145) ** 1.6 * 255 * strength))
        shade = Image.new("RGBA", self.img.size, hex_rgb(tint, 255))
        shade.putalpha(grad)
        self.img.alpha_composite(shade)

    def grain(self, amount: int = 6, seed: int = 7) -> None:
        rnd = random.Random(seed)
        lay, d = self.layer()
        for _ in range(int(self.w * self.h * 0.02)):
            x, y = rnd.uniform(0, self.w), rnd.uniform(0, self.h)
            v = rnd.choice((0, 255))
            d.point((self.s(x), self.s(y)), fill=(v, v, v, amount))
        self.paste(lay)

    def finish(self) -> Image.Image:
        return self.img.convert("RGB").resize((self.w, self.h), Image.Resampling.LANCZOS)


def rotated(points: Sequence[Point], angle_deg: float, origin: Point) -> list[Point]:
    a = math.radians(angle_deg)
    ox, oy = origin
    return [
        (
            ox + (x - ox) * math.cos(a) - (y - oy) * math.sin(a),
            oy + (x - ox) * math.sin(a) + (y - oy) * math.cos(a),
        )
        for x, y in points
    ]


def rect_pts(cx: float, cy: float, w: float, h: float) -> list[Point]:
    return [
        (cx - w / 2, cy - h / 2),
        (cx + w / 2, cy - h / 2),
        (cx + w / 2, cy + h / 2),
        (cx - w / 2, cy + h / 2),
    ]


def sparkle(c: Canvas, d: ImageDraw.ImageDraw, x: float, y: float, r: float, color: Color) -> None:
    k = r * 0.22
    d.polygon(
        c.pts(
            [
                (x, y - r),
                (x + k, y - k),
                (x + r, y),
                (x + k, y + k),
                (x, y + r),
                (x - k, y + k),
                (x - r, y),
                (x - k, y - k),
            ]
        ),
        fill=color,
    )


def wavy(x: float, y0: float, y1: float, amp: float, phase: float, steps: int = 24) -> list[Point]:
    out = []
    for i in range(steps + 1):
        t = i / steps
        y = y0 + (y1 - y0) * t
        out.append((x + math.sin(t * math.pi * 2.2 + phase) * amp * (0.4 + t), y))
    return out


# --------------------------------------------------------------------------- scenes


def car_commercial(c: Canvas) -> None:
    horizon = 232
    c.vgradient(
        [(0, "#15123a"), (0.38, "#4a2668"), (0.6, "#b24a78"), (0.8, "#f0846a"), (1, "#ffc27a")],
        (0, 0, 640, horizon),
    )
    c.glow(430, 214, 120, 70, hex_rgb("#ff9a5a", 150), 30)
    c.draw(lambda d: d.ellipse(c.box(398, 182, 462, 246), fill=hex_rgb("#ffe2b0")))
    c.glow(430, 214, 40, 40, hex_rgb("#fff4dc", 200), 8)
    # far and near ridges
    far = [
        (0, horizon),
        (0, 206),
        (70, 196),
        (140, 210),
        (210, 192),
        (300, 205),
        (360, 198),
        (520, 210),
        (600, 196),
        (640, 204),
        (640, horizon),
    ]
    near = [
        (0, horizon),
        (0, 218),
        (90, 210),
        (170, 222),
        (260, 214),
        (330, 224),
        (540, 224),
        (640, 214),
        (640, horizon),
    ]
    c.draw(lambda d: d.polygon(c.pts(far), fill=hex_rgb("#6b3468", 200)))
    c.draw(lambda d: d.polygon(c.pts(near), fill=hex_rgb("#3a1f4a")))
    c.vgradient([(0, "#2e1a38"), (1, "#0d0912")], (0, horizon, 640, 360))
    vx, vy = 430, horizon

    def road(d: ImageDraw.ImageDraw) -> None:
        d.polygon(
            c.pts([(vx - 6, vy), (vx + 6, vy), (820, 360), (-160, 360)]), fill=hex_rgb("#1c1424")
        )
        d.line(c.pts([(vx - 6, vy), (-160, 360)]), fill=hex_rgb("#ff9a6b", 150), width=c.s(1.5))
        d.line(c.pts([(vx + 6, vy), (820, 360)]), fill=hex_rgb("#ff9a6b", 110), width=c.s(1.5))
        for i in range(7):
            t0, t1 = (i / 7) ** 2, ((i + 0.45) / 7) ** 2
            y0, y1 = vy + (360 - vy) * t0, vy + (360 - vy) * t1
            x0, x1 = vx + (380 - vx) * t0, vx + (380 - vx) * t1
            w0, w1 = 0.4 + 3 * t0, 0.4 + 3 * t1
            d.polygon(
                c.pts([(x0 - w0, y0), (x0 + w0, y0), (x1 + w1, y1), (x1 - w1, y1)]),
                fill=hex_rgb("#ffd39a", 190),
            )

    c.draw(road)
    # sun reflection on the road
    c.glow(420, 300, 40, 70, hex_rgb("#ff9a5a", 40), 20)

    # speed streaks
    def streaks(d: ImageDraw.ImageDraw) -> None:
        rnd = random.Random(3)
        for _ in range(14):
            y = rnd.uniform(248, 300)
            x = rnd.uniform(-20, 110)
            d.line(
                c.pts([(x, y), (x + rnd.uniform(50, 120), y)]),
                fill=hex_rgb("#ffb88a", rnd.randint(40, 110)),
                width=c.s(rnd.uniform(0.8, 1.8)),
            )

    c.draw(streaks, blur=0.6)
    # car
    c.glow(270, 304, 175, 10, (0, 0, 0, 200), 6)
    body = [
        (108, 296),
        (104, 276),
        (112, 260),
        (150, 252),
        (196, 244),
        (226, 224),
        (262, 213),
        (300, 212),
        (326, 218),
        (356, 238),
        (404, 246),
        (430, 255),
        (438, 270),
        (434, 292),
        (420, 298),
    ]
    c.draw(lambda d: d.polygon(c.pts(body), fill=hex_rgb("#0c0912")))
    c.draw(
        lambda d: d.polygon(
            c.pts([(232, 235), (266, 221), (300, 220), (322, 226), (342, 240), (240, 241)]),
            fill=hex_rgb("#3b2c4c"),
        )
    )
    c.draw(lambda d: d.line(c.pts([(286, 221), (288, 240)]), fill=hex_rgb("#0c0912"), width=c.s(3)))
    c.draw(
        lambda d: d.line(c.pts(body[3:12]), fill=hex_rgb("#ff9f70"), width=c.s(2), joint="curve"),
        blur=0.3,
    )
    c.draw(
        lambda d: d.line(c.pts([(120, 272), (420, 276)]), fill=hex_rgb("#ff8a5c", 90), width=c.s(1))
    )
    for wx in (168, 374):
        c.draw(
            lambda d, wx=wx: d.ellipse(c.box(wx - 25, 270, wx + 25, 320), fill=hex_rgb("#0c0912"))
        )
        c.draw(
            lambda d, wx=wx: d.ellipse(c.box(wx - 20, 275, wx + 20, 315), fill=hex_rgb("#050308"))
        )
        c.draw(
            lambda d, wx=wx: d.ellipse(
                c.box(wx - 13, 282, wx + 13, 308), outline=hex_rgb("#6d5a7a"), width=c.s(2.5)
            )
        )
        c.draw(
            lambda d, wx=wx: d.arc(
                c.box(wx - 20, 275, wx + 20, 315), 200, 320, fill=hex_rgb("#ffb07c"), width=c.s(1.5)
            )
        )
    # head and tail lights
    c.draw(
        lambda d: d.polygon(
            c.pts([(434, 262), (640, 236), (640, 300), (434, 270)]), fill=hex_rgb("#fff0d0", 40)
        ),
        blur=5,
    )
    c.glow(432, 264, 10, 5, hex_rgb("#fff6e0", 255), 2)
    c.glow(110, 266, 8, 4, hex_rgb("#ff2d55", 255), 2)
    c.glow(110, 266, 20, 8, hex_rgb("#ff2d55", 120), 6)
    c.vignette(0.65)


def product_turntable(c: Canvas) -> None:
    c.vgradient([(0, "#2a2e38"), (0.55, "#1b1e25"), (1, "#0f1115")])
    c.glow(320, 150, 230, 150, hex_rgb("#5b6478", 110), 50)
    # spotlight cone
    c.draw(
        lambda d: d.polygon(
            c.pts([(290, -10), (350, -10), (480, 290), (160, 290)]), fill=(255, 255, 255, 22)
        ),
        blur=10,
    )
    # turntable (cylinder)
    cx, cy, rx, ry, hgt = 320, 282, 160, 30, 16
    c.draw(
        lambda d: d.ellipse(
            c.box(cx - rx - 10, cy + hgt + 4, cx + rx + 10, cy + hgt + 2 * ry + 14),
            fill=(0, 0, 0, 150),
        ),
        blur=8,
    )
    c.hgradient_shape(
        lambda d: (
            d.rectangle(c.box(cx - rx, cy, cx + rx, cy + hgt), fill=255),
            d.ellipse(c.box(cx - rx, cy + hgt - ry, cx + rx, cy + hgt + ry), fill=255),
        ),
        "#1c1f26",
        "#14161b",
        mid="#4a5060",
    )
    c.draw(lambda d: d.ellipse(c.box(cx - rx, cy - ry, cx + rx, cy + ry), fill=hex_rgb("#3a3f4c")))
    c.draw(
        lambda d: d.ellipse(
            c.box(cx - rx + 14, cy - ry + 4, cx + rx - 14, cy + ry - 4), fill=hex_rgb("#444a58")
        )
    )
    c.draw(
        lambda d: d.arc(
            c.box(cx - rx, cy - ry, cx + rx, cy + ry),
            190,
            350,
            fill=hex_rgb("#9aa3b8"),
            width=c.s(1.5),
        )
    )
    # bottle shadow + body
    c.glow(320, 284, 58, 10, (0, 0, 0, 170), 5)
    c.hgradient_shape(
        lambda d: d.rounded_rectangle(c.box(268, 150, 372, 284), radius=c.s(18), fill=255),
        "#1b4d57",
        "#0d2a31",
        mid="#5cb8b8",
    )
    c.draw(
        lambda d: d.rounded_rectangle(
            c.box(274, 156, 366, 278), radius=c.s(14), outline=(255, 255, 255, 40), width=c.s(1)
        )
    )
    c.draw(
        lambda d: d.rounded_rectangle(
            c.box(284, 160, 296, 270), radius=c.s(6), fill=(255, 255, 255, 70)
        ),
        blur=1.5,
    )
    c.draw(lambda d: d.rectangle(c.box(278, 205, 362, 236), fill=(245, 240, 230, 60)))
    c.draw(
        lambda d: d.line(c.pts([(300, 220), (340, 220)]), fill=(255, 255, 255, 120), width=c.s(2))
    )
    c.hgradient_shape(
        lambda d: d.rectangle(c.box(306, 138, 334, 152), fill=255),
        "#8a6a35",
        "#5a4320",
        mid="#f3d08a",
    )
    c.hgradient_shape(
        lambda d: d.rounded_rectangle(c.box(296, 104, 344, 140), radius=c.s(6), fill=255),
        "#8a6a35",
        "#4a361a",
        mid="#f5d792",
    )
    c.draw(lambda d: d.line(c.pts([(296, 122), (344, 122)]), fill=(0, 0, 0, 60), width=c.s(1)))

    # rotation arrows around the turntable
    def arrows(d: ImageDraw.ImageDraw) -> None:
        color = hex_rgb("#a99bff", 210)
        box = c.box(cx - rx - 22, cy - ry - 16, cx + rx + 22, cy + ry + 22)
        d.arc(box, 20, 70, fill=color, width=c.s(2.5))
        d.arc(box, 110, 160, fill=color, width=c.s(2.5))
        ex, ey = (
            cx + (rx + 22) * math.cos(math.radians(20)),
            cy + 3 + (ry + 19) * math.sin(math.radians(20)),
        )
        d.polygon(c.pts([(ex + 2, ey - 12), (ex + 9, ey + 1), (ex - 5, ey + 1)]), fill=color)
        sx, sy = (
            cx + (rx + 22) * math.cos(math.radians(160)),
            cy + 3 + (ry + 19) * math.sin(math.radians(160)),
        )
        d.polygon(c.pts([(sx - 2, sy - 12), (sx - 9, sy + 1), (sx + 5, sy + 1)]), fill=color)

    c.draw(arrows)

    def sparkles(d: ImageDraw.ImageDraw) -> None:
        sparkle(c, d, 356, 170, 9, (255, 255, 255, 230))
        sparkle(c, d, 250, 120, 6, (255, 255, 255, 150))
        sparkle(c, d, 400, 110, 5, hex_rgb("#cfc6ff", 170))

    c.draw(sparkles)
    c.glow(356, 170, 8, 8, (255, 255, 255, 90), 4)
    c.vignette(0.7)


def real_estate_walkthrough(c: Canvas) -> None:
    back = (130, 46, 510, 248)
    # ceiling, walls, floor
    c.draw(lambda d: d.rectangle(c.box(0, 0, 640, 360), fill=hex_rgb("#f4ede4")))
    c.vgradient([(0, "#efe4d6"), (1, "#e3d2bd")], back)
    c.draw(
        lambda d: d.polygon(
            c.pts([(0, 0), (back[0], back[1]), (back[0], back[3]), (0, 360)]),
            fill=hex_rgb("#d9c6ae"),
        )
    )
    c.draw(
        lambda d: d.polygon(
            c.pts([(640, 0), (back[2], back[1]), (back[2], back[3]), (640, 360)]),
            fill=hex_rgb("#f1e6d8"),
        )
    )
    floor_mask = Image.new("L", c.img.size, 0)
    ImageDraw.Draw(floor_mask).polygon(
        c.pts([(back[0], back[3]), (back[2], back[3]), (640, 360), (0, 360)]), fill=255
    )
    c.vgradient([(0, "#a8794f"), (1, "#7a5234")], (0, back[3], 640, 360), mask=floor_mask)
    vx = 320

    def planks(d: ImageDraw.ImageDraw) -> None:
        for i in range(-8, 9):
            x_far = vx + i * 24
            x_near = vx + i * 78
            d.line(c.pts([(x_far, back[3]), (x_near, 360)]), fill=(60, 36, 20, 70), width=c.s(1))
        for y in (262, 282, 310, 345):
            d.line(c.pts([(0, y), (640, y)]), fill=(60, 36, 20, 35), width=c.s(1))

    lay, d = c.layer()
    planks(d)
    lay.putalpha(ImageChops.multiply(lay.getchannel("A"), floor_mask))
    c.paste(lay)
    # window with sky
    win = (340, 74, 480, 214)
    c.vgradient([(0, "#9fd3f5"), (0.7, "#dff0f7"), (1, "#fff0d2")], win)
    c.draw(
        lambda d: d.polygon(
            c.pts([(340, 190), (380, 176), (430, 184), (480, 172), (480, 214), (340, 214)]),
            fill=hex_rgb("#8fb38a"),
        )
    )

    def frame(d: ImageDraw.ImageDraw) -> None:
        d.rectangle(c.box(*win), outline=hex_rgb("#ffffff"), width=c.s(5))
        d.line(c.pts([(410, win[1]), (410, win[3])]), fill=hex_rgb("#ffffff"), width=c.s(4))
        d.line(c.pts([(win[0], 144), (win[2], 144)]), fill=hex_rgb("#ffffff"), width=c.s(4))
        d.rectangle(c.box(win[0] - 8, win[3], win[2] + 8, win[3] + 6), fill=hex_rgb("#fbf7f1"))

    c.draw(frame)
    # sunbeam onto the floor
    c.draw(
        lambda d: d.polygon(
            c.pts([(340, 78), (480, 74), (400, 350), (170, 350)]), fill=(255, 244, 214, 60)
        ),
        blur=8,
    )
    c.draw(
        lambda d: d.polygon(
            c.pts([(250, 262), (360, 262), (330, 330), (190, 330)]), fill=(255, 240, 200, 70)
        ),
        blur=4,
    )
    # rug
    c.draw(
        lambda d: d.polygon(
            c.pts([(170, 262), (410, 262), (470, 318), (110, 318)]), fill=hex_rgb("#e6d6bf")
        )
    )
    c.draw(
        lambda d: d.polygon(
            c.pts([(182, 266), (398, 266), (452, 312), (128, 312)]),
            outline=hex_rgb("#c9b08e"),
            width=c.s(1.5),
        )
    )

    # sofa
    def sofa(d: ImageDraw.ImageDraw) -> None:
        col, dark, light = hex_rgb("#5f7184"), hex_rgb("#4b5b6c"), hex_rgb("#7a8ca0")
        d.rounded_rectangle(c.box(146, 188, 316, 232), radius=c.s(10), fill=dark)
        d.rounded_rectangle(c.box(140, 220, 322, 256), radius=c.s(8), fill=col)
        d.rounded_rectangle(c.box(152, 212, 230, 236), radius=c.s(6), fill=light)
        d.rounded_rectangle(c.box(232, 212, 310, 236), radius=c.s(6), fill=light)
        d.rounded_rectangle(c.box(132, 206, 154, 256), radius=c.s(8), fill=dark)
        d.rounded_rectangle(c.box(308, 206, 330, 256), radius=c.s(8), fill=dark)
        d.rounded_rectangle(c.box(166, 196, 196, 220), radius=c.s(5), fill=hex_rgb("#e9b872"))
        for x in (142, 318):
            d.rectangle(c.box(x, 256, x + 4, 264), fill=hex_rgb("#3b2a1e"))

    c.glow(230, 262, 100, 8, (40, 25, 10, 110), 5)
    c.draw(sofa)
    # coffee table
    c.draw(lambda d: d.ellipse(c.box(230, 272, 330, 290), fill=hex_rgb("#f6efe5")))
    c.draw(lambda d: d.rectangle(c.box(277, 288, 283, 300), fill=hex_rgb("#c9b8a2")))
    c.draw(lambda d: d.ellipse(c.box(262, 268, 282, 280), fill=hex_rgb("#c4704f")))
    # plant
    c.draw(
        lambda d: d.polygon(
            c.pts([(486, 226), (518, 226), (512, 262), (492, 262)]), fill=hex_rgb("#c9b49a")
        )
    )

    def leaves(d: ImageDraw.ImageDraw) -> None:
        for ang, ln in (
            (-60, 46),
            (-90, 58),
            (-120, 48),
            (-35, 36),
            (-145, 38),
            (-75, 64),
            (-105, 62),
        ):
            a = math.radians(ang)
            tip = (502 + math.cos(a) * ln, 226 + math.sin(a) * ln)
            mid = (502 + math.cos(a) * ln * 0.55, 226 + math.sin(a) * ln * 0.55)
            n = (-math.sin(a) * 9, math.cos(a) * 9)
            d.polygon(
                c.pts(
                    [
                        (502, 226),
                        (mid[0] + n[0], mid[1] + n[1]),
                        tip,
                        (mid[0] - n[0], mid[1] - n[1]),
                    ]
                ),
                fill=hex_rgb("#4f7f52" if ang % 2 else "#5e9460"),
            )

    c.draw(leaves)
    # pendant lamp
    c.draw(lambda d: d.line(c.pts([(236, 0), (236, 78)]), fill=hex_rgb("#3a3a3a"), width=c.s(1.2)))
    c.glow(236, 100, 46, 30, hex_rgb("#ffd58a", 110), 14)
    c.draw(
        lambda d: d.polygon(
            c.pts([(226, 78), (246, 78), (262, 100), (210, 100)]), fill=hex_rgb("#2f2f33")
        )
    )
    c.glow(236, 101, 12, 3, hex_rgb("#fff2cc", 240), 1.5)

    # path of the camera: subtle chevrons on the floor
    def chevrons(d: ImageDraw.ImageDraw) -> None:
        for i, (y, w) in enumerate(((346, 20), (326, 16), (310, 12))):
            d.line(
                c.pts([(320 - w, y + w * 0.45), (320, y), (320 + w, y + w * 0.45)]),
                fill=(255, 255, 255, 170 - i * 40),
                width=c.s(3),
                joint="curve",
            )

    c.draw(chevrons)
    c.vignette(0.45, tint="#2a1a0e")


def food_close_up(c: Canvas) -> None:
    c.vgradient([(0, "#1d140f"), (0.5, "#2a1b12"), (1, "#120b07")])
    rnd = random.Random(11)
    for _ in range(16):
        x, y, r = rnd.uniform(0, 640), rnd.uniform(0, 120), rnd.uniform(10, 28)
        col = rnd.choice(("#ffb65c", "#ff8f3d", "#ffd79a", "#f2a65a"))
        c.glow(x, y, r, r, hex_rgb(col, rnd.randint(40, 110)), 4)
    # table
    c.vgradient([(0, "#3a2619"), (1, "#1a100a")], (0, 150, 640, 360))

    def grain_lines(d: ImageDraw.ImageDraw) -> None:
        for i in range(12):
            y = 160 + i * 17 + rnd.uniform(-3, 3)
            d.line(c.pts([(0, y), (640, y + rnd.uniform(-6, 6))]), fill=(0, 0, 0, 50), width=c.s(1))

    c.draw(grain_lines)
    c.glow(320, 160, 260, 60, hex_rgb("#ff9a4a", 50), 30)
    cx, cy = 320, 214
    # bowl shadow, body, rim
    c.glow(cx + 10, 300, 200, 26, (0, 0, 0, 200), 10)
    c.hgradient_shape(
        lambda d: (
            d.chord(c.box(cx - 178, cy - 90, cx + 178, cy + 100), 0, 180, fill=255),
            d.rectangle(c.box(cx - 178, cy - 2, cx + 178, cy + 6), fill=255),
        ),
        "#0f1419",
        "#0b0e12",
        mid="#3b4856",
    )
    c.draw(
        lambda d: d.rounded_rectangle(
            c.box(cx - 60, cy + 88, cx + 60, cy + 102), radius=c.s(5), fill=hex_rgb("#141a20")
        )
    )
    c.draw(
        lambda d: d.ellipse(c.box(cx - 178, cy - 56, cx + 178, cy + 56), fill=hex_rgb("#2b333d"))
    )
    c.draw(
        lambda d: d.ellipse(c.box(cx - 166, cy - 48, cx + 166, cy + 48), fill=hex_rgb("#8a4a1c"))
    )
    c.vgradient(
        [(0, "#b8692a"), (1, "#d99148")],
        (cx - 160, cy - 44, cx + 160, cy + 44),
        mask=_ellipse_mask(c, cx - 160, cy - 44, cx + 160, cy + 44),
    )
    c.draw(
        lambda d: d.arc(
            c.box(cx - 178, cy - 56, cx + 178, cy + 56),
            180,
            360,
            fill=hex_rgb("#8796a8"),
            width=c.s(1.5),
        )
    )

    def noodles(d: ImageDraw.ImageDraw) -> None:
        for k in range(9):
            pts = []
            for i in range(30):
                t = i / 29
                x = cx - 120 + t * 170
                y = cy + 4 + math.sin(t * 9 + k) * 6 + (k - 4) * 4
                pts.append((x, y))
            d.line(c.pts(pts), fill=hex_rgb("#f3d79c", 230), width=c.s(2.4), joint="curve")

    c.draw(noodles)

    def toppings(d: ImageDraw.ImageDraw) -> None:
        # chashu
        for x, y in ((cx + 52, cy - 14), (cx + 88, cy + 6)):
            d.ellipse(c.box(x - 28, y - 16, x + 28, y + 16), fill=hex_rgb("#c98a6b"))
            d.ellipse(c.box(x - 21, y - 11, x + 21, y + 11), fill=hex_rgb("#e9b79a"))
            d.arc(
                c.box(x - 28, y - 16, x + 28, y + 16),
                200,
                340,
                fill=hex_rgb("#7a3f24"),
                width=c.s(2),
            )
        # egg halves
        for x, y in ((cx - 70, cy - 20), (cx - 34, cy - 26)):
            d.ellipse(c.box(x - 20, y - 13, x + 20, y + 13), fill=hex_rgb("#fbf4e6"))
            d.ellipse(c.box(x - 10, y - 7, x + 10, y + 7), fill=hex_rgb("#f0a22c"))
        # nori
        d.polygon(
            c.pts(rotated(rect_pts(cx - 120, cy - 22, 26, 48), -18, (cx - 120, cy - 22))),
            fill=hex_rgb("#1c2a1f"),
        )
        # scallions
        for _ in range(26):
            x, y = rnd.uniform(cx - 100, cx + 110), rnd.uniform(cy - 30, cy + 30)
            d.ellipse(
                c.box(x - 3, y - 2, x + 3, y + 2),
                fill=hex_rgb(rnd.choice(("#7cc46b", "#a6db7a", "#5ea552"))),
            )
        for _ in range(18):
            x, y = rnd.uniform(cx - 140, cx + 140), rnd.uniform(cy - 36, cy + 36)
            d.ellipse(c.box(x - 1.2, y - 1.2, x + 1.2, y + 1.2), fill=(255, 240, 200, 200))

    c.draw(toppings)
    # chopsticks
    c.draw(
        lambda d: d.polygon(
            c.pts([(402, 120), (408, 116), (612, 262), (604, 268)]), fill=hex_rgb("#c89a62")
        )
    )
    c.draw(
        lambda d: d.polygon(
            c.pts([(384, 134), (390, 129), (630, 240), (626, 247)]), fill=hex_rgb("#b0834f")
        )
    )

    # steam
    def steam(d: ImageDraw.ImageDraw) -> None:
        for x, ph, amp in ((270, 0.0, 10), (318, 1.7, 13), (362, 3.1, 9), (300, 4.2, 7)):
            d.line(
                c.pts(wavy(x, cy - 30, 20, amp, ph)),
                fill=(255, 255, 255, 90),
                width=c.s(5),
                joint="curve",
            )

    c.draw(steam, blur=3.5)
    c.vignette(0.75)


def _ellipse_mask(c: Canvas, x0: float, y0: float, x1: float, y1: float) -> Image.Image:
    mask = Image.new("L", c.img.size, 0)
    ImageDraw.Draw(mask).ellipse(c.box(x0, y0, x1, y1), fill=255)
    return mask


def fashion_lookbook(c: Canvas) -> None:
    c.vgradient([(0, "#f3d9d2"), (0.6, "#ead5ec"), (1, "#d9cde8")])
    # arched backdrop
    c.draw(
        lambda d: (
            d.rounded_rectangle(c.box(220, 24, 420, 330), radius=c.s(100), fill=hex_rgb("#fbefe9")),
        )
    )
    c.glow(320, 140, 90, 110, (255, 255, 255, 120), 24)
    c.draw(lambda d: d.rectangle(c.box(0, 318, 640, 360), fill=hex_rgb("#e2cfdc")))
    c.glow(320, 330, 90, 9, (90, 60, 80, 90), 6)
    # side panels: smaller looks, faded
    for x, col in ((110, "#9fb4c9"), (530, "#c9a3a8")):
        c.draw(
            lambda d, x=x: d.rounded_rectangle(
                c.box(x - 62, 70, x + 62, 290), radius=c.s(14), fill=(255, 255, 255, 110)
            )
        )
        _figure(c, x, 92, 0.62, col, "#3a3340", alpha=150)
    _figure(c, 320, 64, 1.0, "#c48a58", "#2c2530")
    # leaves drifting
    rnd = random.Random(5)

    def leaves(d: ImageDraw.ImageDraw) -> None:
        for _ in range(9):
            x, y = rnd.uniform(180, 600), rnd.uniform(30, 300)
            ang = rnd.uniform(0, 180)
            col = hex_rgb(rnd.choice(("#d98e5f", "#c96f4a", "#e6b16a")), 210)
            d.polygon(
                c.pts(rotated([(x - 7, y), (x, y - 3.2), (x + 7, y), (x, y + 3.2)], ang, (x, y))),
                fill=col,
            )

    c.draw(leaves)
    c.vignette(0.35, tint="#4a3350")


def _figure(
    c: Canvas, x: float, top: float, k: float, coat: str, dark: str, alpha: int = 255
) -> None:
    """A stylised standing figure in a long coat, scarf blowing to the right."""

    def p(dx: float, dy: float) -> Point:
        return (x + dx * k, top + dy * k)

    coat_rgb = hex_rgb(coat)
    coat_c, dark_c = (*coat_rgb, alpha), hex_rgb(dark, alpha)
    # Shapes in one layer replace each other's pixels: shade with a darker colour, not an overlay.
    shade = (*mix(coat_rgb, (0, 0, 0), 0.16), alpha)
    belt = (*mix(coat_rgb, (0, 0, 0), 0.35), alpha)

    def fig(d: ImageDraw.ImageDraw) -> None:
        # legs and shoes
        d.polygon(c.pts([p(-14, 200), p(-4, 200), p(-6, 262), p(-14, 262)]), fill=dark_c)
        d.polygon(c.pts([p(4, 200), p(14, 200), p(14, 262), p(6, 262)]), fill=dark_c)
        d.ellipse(c.box(*p(-22, 257), *p(-4, 267)), fill=dark_c)
        d.ellipse(c.box(*p(4, 257), *p(22, 267)), fill=dark_c)
        # coat: lit left half, shaded right half with a hem flaring in the breeze
        d.polygon(
            c.pts(
                [
                    p(-30, 40),
                    p(30, 40),
                    p(46, 120),
                    p(62, 226),
                    p(40, 232),
                    p(0, 226),
                    p(-44, 230),
                    p(-58, 224),
                    p(-44, 120),
                ]
            ),
            fill=coat_c,
        )
        d.polygon(
            c.pts([p(2, 46), p(10, 226), p(40, 232), p(62, 226), p(46, 120), p(30, 40)]), fill=shade
        )
        d.line(c.pts([p(-20, 130), p(-30, 224)]), fill=shade, width=c.s(1.5 * k))
        d.line(c.pts([p(28, 130), p(44, 228)]), fill=belt, width=c.s(1.2 * k))
        # arms
        d.polygon(
            c.pts([p(-30, 42), p(-42, 48), p(-52, 140), p(-40, 142), p(-34, 70)]), fill=coat_c
        )
        d.polygon(c.pts([p(30, 42), p(42, 48), p(50, 140), p(38, 142), p(34, 70)]), fill=shade)
        d.ellipse(c.box(*p(-52, 138), *p(-40, 150)), fill=hex_rgb("#efc3a6", alpha))
        d.ellipse(c.box(*p(38, 138), *p(50, 150)), fill=hex_rgb("#e8b99c", alpha))
        # lapels and belt
        d.polygon(c.pts([p(-12, 38), p(0, 92), p(12, 38)]), fill=hex_rgb("#f4e8e0", alpha))
        d.line(c.pts([p(-12, 38), p(-2, 120)]), fill=belt, width=c.s(1.4 * k))
        d.line(c.pts([p(12, 38), p(2, 120)]), fill=belt, width=c.s(1.4 * k))
        d.line(c.pts([p(-44, 118), p(46, 118)]), fill=belt, width=c.s(4 * k))
        # neck, head, hair
        d.rectangle(c.box(*p(-5, 20), *p(5, 40)), fill=hex_rgb("#e8b99c", alpha))
        d.ellipse(c.box(*p(-15, -8), *p(15, 26)), fill=hex_rgb("#efc3a6", alpha))
        d.chord(c.box(*p(-17, -11), *p(17, 22)), 170, 370, fill=dark_c)
        d.ellipse(c.box(*p(-9, -22), *p(9, -6)), fill=dark_c)
        # scarf blowing in the wind
        d.polygon(
            c.pts([p(-14, 34), p(14, 34), p(60, 40), p(98, 30), p(92, 46), p(56, 54), p(10, 50)]),
            fill=hex_rgb("#d35f6b", alpha),
        )

    c.draw(fig)


def travel_postcard(c: Canvas) -> None:
    c.draw(lambda d: d.rectangle(c.box(0, 0, 640, 360), fill=hex_rgb("#f6efdf")))
    inner = (16, 16, 624, 344)
    mask = Image.new("L", c.img.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle(c.box(*inner), radius=c.s(10), fill=255)
    photo = Canvas((640, 360))
    _postcard_photo(photo)
    photo.img.putalpha(mask)
    c.img.alpha_composite(photo.img)
    c.draw(
        lambda d: d.rounded_rectangle(
            c.box(*inner), radius=c.s(10), outline=(255, 255, 255, 160), width=c.s(1.5)
        )
    )
    # stamp with a perforated edge
    sx0, sy0, sx1, sy1 = 540, 30, 604, 104

    def stamp(d: ImageDraw.ImageDraw) -> None:
        d.rectangle(c.box(sx0, sy0, sx1, sy1), fill=hex_rgb("#fbf7ee"))
        step = 6.4
        for i in range(11):
            x = sx0 + i * step
            d.ellipse(c.box(x - 2, sy0 - 2, x + 2, sy0 + 2), fill=(0, 0, 0, 0))
        d.rectangle(c.box(sx0 + 5, sy0 + 5, sx1 - 5, sy1 - 5), fill=hex_rgb("#f0875a"))
        d.ellipse(c.box(sx0 + 22, sy0 + 14, sx0 + 42, sy0 + 34), fill=hex_rgb("#ffe08a"))
        d.rectangle(c.box(sx0 + 5, sy0 + 44, sx1 - 5, sy1 - 5), fill=hex_rgb("#2f7fb5"))
        for j in range(3):
            y = sy0 + 50 + j * 8
            d.line(
                c.pts([(sx0 + 8 + t * 3, y + math.sin(t) * 1.5) for t in range(17)]),
                fill=(255, 255, 255, 200),
                width=c.s(1.2),
            )

    c.glow((sx0 + sx1) / 2 + 2, (sy0 + sy1) / 2 + 3, 34, 40, (0, 0, 0, 70), 4)
    c.draw(stamp)

    # scalloped stamp edge: punch holes in the background colour
    def perforation(d: ImageDraw.ImageDraw) -> None:
        col = hex_rgb("#2f8cc9")
        step = 6.4
        n = int((sx1 - sx0) / step) + 1
        for i in range(n):
            x = sx0 + i * step
            for y in (sy0, sy1):
                d.ellipse(c.box(x - 1.8, y - 1.8, x + 1.8, y + 1.8), fill=col)
        m = int((sy1 - sy0) / step) + 1
        for i in range(m):
            y = sy0 + i * step
            for x in (sx0, sx1):
                d.ellipse(c.box(x - 1.8, y - 1.8, x + 1.8, y + 1.8), fill=col)

    c.draw(perforation)

    # postmark
    def postmark(d: ImageDraw.ImageDraw) -> None:
        ink = hex_rgb("#1d3557", 120)
        d.ellipse(c.box(496, 52, 548, 104), outline=ink, width=c.s(1.6))
        d.ellipse(c.box(503, 59, 541, 97), outline=ink, width=c.s(1))
        for j in range(4):
            y = 64 + j * 9
            d.line(
                c.pts([(430 + t * 4, y + math.sin(t * 0.9) * 2) for t in range(20)]),
                fill=ink,
                width=c.s(1.4),
            )

    c.draw(postmark)
    c.vignette(0.3, tint="#3b2a10")


def _postcard_photo(c: Canvas) -> None:
    horizon = 214
    c.vgradient([(0, "#2f86c8"), (0.55, "#7cc0e8"), (1, "#d9eef5")], (0, 0, 640, horizon))
    c.glow(450, 96, 80, 80, hex_rgb("#fff3c4", 150), 26)
    c.draw(lambda d: d.ellipse(c.box(428, 74, 472, 118), fill=hex_rgb("#fff7dc")))

    def clouds(d: ImageDraw.ImageDraw) -> None:
        for cx, cy, k in ((150, 70, 1.0), (330, 44, 0.7), (560, 140, 0.8)):
            for dx, dy, r in ((-40, 6, 22), (-12, -8, 30), (22, -2, 26), (48, 8, 18), (0, 10, 24)):
                d.ellipse(
                    c.box(
                        cx + (dx - r) * k,
                        cy + (dy - r * 0.7) * k,
                        cx + (dx + r) * k,
                        cy + (dy + r * 0.7) * k,
                    ),
                    fill=(255, 255, 255, 215),
                )

    c.draw(clouds, blur=1.2)
    c.vgradient([(0, "#2a8fc4"), (1, "#0c4d7c")], (0, horizon, 640, 360))
    rnd = random.Random(21)

    def glitter(d: ImageDraw.ImageDraw) -> None:
        for _ in range(60):
            x = rnd.gauss(450, 70)
            y = rnd.uniform(horizon + 4, 350)
            w = rnd.uniform(4, 16) * (y - horizon) / 120
            d.line(
                c.pts([(x - w, y), (x + w, y)]),
                fill=(255, 250, 225, rnd.randint(70, 170)),
                width=c.s(1),
            )
        for _ in range(40):
            x, y = rnd.uniform(0, 640), rnd.uniform(horizon + 8, 355)
            w = rnd.uniform(6, 20)
            d.line(c.pts([(x - w, y), (x + w, y)]), fill=(255, 255, 255, 45), width=c.s(1))

    c.draw(glitter)
    # cliff with white houses and blue domes
    cliff = [
        (0, 360),
        (0, 120),
        (40, 112),
        (90, 126),
        (150, 140),
        (205, 170),
        (240, 214),
        (262, 260),
        (250, 300),
        (280, 360),
    ]
    c.draw(lambda d: d.polygon(c.pts(cliff), fill=hex_rgb("#9b6b4c")))
    c.draw(
        lambda d: d.polygon(
            c.pts(
                [
                    (150, 140),
                    (205, 170),
                    (240, 214),
                    (262, 260),
                    (250, 300),
                    (280, 360),
                    (200, 360),
                    (196, 260),
                ]
            ),
            fill=hex_rgb("#7a5038"),
        )
    )

    def village(d: ImageDraw.ImageDraw) -> None:
        houses = [
            (10, 100, 34, 26),
            (46, 104, 30, 22),
            (82, 114, 36, 26),
            (124, 126, 28, 22),
            (22, 130, 40, 28),
            (66, 142, 34, 24),
            (108, 152, 30, 22),
            (150, 160, 30, 20),
            (30, 166, 36, 26),
            (78, 178, 32, 22),
            (122, 184, 28, 22),
            (176, 186, 24, 20),
        ]
        for hx, hy, hw, hh in houses:
            d.rectangle(c.box(hx, hy, hx + hw, hy + hh), fill=hex_rgb("#fbfbf7"))
            d.rectangle(c.box(hx + hw - 6, hy, hx + hw, hy + hh), fill=hex_rgb("#dfe3e6"))
            d.rectangle(
                c.box(hx + hw * 0.35, hy + hh * 0.45, hx + hw * 0.55, hy + hh * 0.8),
                fill=hex_rgb("#2d6fa8"),
            )
        for dx, dy, r in ((58, 96, 10), (140, 118, 8), (96, 138, 9)):
            d.chord(c.box(dx - r, dy - r, dx + r, dy + r), 180, 360, fill=hex_rgb("#1f5fb0"))
            d.rectangle(c.box(dx - r, dy, dx + r, dy + 10), fill=hex_rgb("#fbfbf7"))

    c.draw(village)

    # sailboat
    def boat(d: ImageDraw.ImageDraw) -> None:
        d.polygon(c.pts([(470, 262), (530, 262), (520, 272), (478, 272)]), fill=hex_rgb("#203044"))
        d.polygon(c.pts([(498, 196), (498, 258), (470, 258)]), fill=hex_rgb("#ffffff"))
        d.polygon(c.pts([(502, 206), (502, 258), (528, 258)]), fill=hex_rgb("#f1f4f8"))
        d.line(c.pts([(500, 192), (500, 262)]), fill=hex_rgb("#203044"), width=c.s(1.5))
        d.line(c.pts([(462, 276), (540, 276)]), fill=(255, 255, 255, 140), width=c.s(1.5))

    c.draw(boat)

    def birds(d: ImageDraw.ImageDraw) -> None:
        for bx, by, s in ((330, 120, 7), (352, 108, 5), (372, 126, 6), (300, 100, 4)):
            d.line(
                c.pts([(bx - s, by - s * 0.4), (bx, by), (bx + s, by - s * 0.4)]),
                fill=hex_rgb("#1d2b3a", 220),
                width=c.s(1.4),
                joint="curve",
            )

    c.draw(birds)


def social_teaser_vertical(c: Canvas) -> None:
    c.vgradient([(0, "#24104f"), (0.45, "#8e1f78"), (0.78, "#e8457a"), (1, "#ff9a4a")])
    cx, cy = 180, 330

    def rays(d: ImageDraw.ImageDraw) -> None:
        for i in range(18):
            a0 = math.radians(i * 20)
            a1 = a0 + math.radians(9)
            r = 700
            d.polygon(
                c.pts(
                    [
                        (cx, cy),
                        (cx + math.cos(a0) * r, cy + math.sin(a0) * r),
                        (cx + math.cos(a1) * r, cy + math.sin(a1) * r),
                    ]
                ),
                fill=(255, 255, 255, 18),
            )

    c.draw(rays)
    c.glow(cx, cy, 140, 140, hex_rgb("#ffd1e8", 90), 40)
    # pedestal
    px, py, prx, pry, ph = 180, 480, 104, 22, 34
    c.glow(px, py + ph + 18, 120, 14, (40, 0, 40, 140), 8)
    c.hgradient_shape(
        lambda d: (
            d.rectangle(c.box(px - prx, py, px + prx, py + ph), fill=255),
            d.ellipse(c.box(px - prx, py + ph - pry, px + prx, py + ph + pry), fill=255),
        ),
        "#d9c6e6",
        "#8e6ea8",
        mid="#ffffff",
    )
    c.draw(
        lambda d: d.ellipse(c.box(px - prx, py - pry, px + prx, py + pry), fill=hex_rgb("#fbf3ff"))
    )
    # can
    c.glow(180, 478, 60, 9, (60, 10, 60, 150), 4)
    can = (128, 262, 232, 474)
    c.hgradient_shape(
        lambda d: d.rounded_rectangle(c.box(*can), radius=c.s(16), fill=255),
        "#e07b00",
        "#b85400",
        mid="#ffd24d",
    )
    c.draw(lambda d: d.rectangle(c.box(can[0], 330, can[2], 392), fill=(255, 255, 255, 235)))
    c.hgradient_shape(
        lambda d: d.rectangle(c.box(can[0], 336, can[2], 386), fill=255),
        "#c2185b",
        "#7a0f3d",
        mid="#ff5c8a",
    )
    c.draw(lambda d: d.ellipse(c.box(150, 344, 210, 378), fill=(255, 255, 255, 230)))
    c.draw(lambda d: d.ellipse(c.box(162, 352, 198, 370), fill=hex_rgb("#ffb300")))
    c.hgradient_shape(
        lambda d: d.ellipse(c.box(can[0] + 4, can[1] - 10, can[2] - 4, can[1] + 12), fill=255),
        "#8d9099",
        "#6d7079",
        mid="#f4f6fa",
    )
    c.draw(lambda d: d.ellipse(c.box(166, can[1] - 6, 194, can[1] + 4), fill=hex_rgb("#a3a7b0")))
    c.draw(
        lambda d: d.rounded_rectangle(
            c.box(146, 276, 156, 464), radius=c.s(5), fill=(255, 255, 255, 80)
        ),
        blur=1.5,
    )
    # drops of condensation
    rnd = random.Random(9)

    def drops(d: ImageDraw.ImageDraw) -> None:
        for _ in range(22):
            x, y = rnd.uniform(134, 226), rnd.uniform(272, 468)
            if 330 < y < 392:
                continue
            r = rnd.uniform(1.2, 2.6)
            d.ellipse(c.box(x - r, y - r * 1.3, x + r, y + r * 1.3), fill=(255, 255, 255, 150))

    c.draw(drops)

    # confetti
    def confetti(d: ImageDraw.ImageDraw) -> None:
        cols = ("#ffd54f", "#4dd0e1", "#ffffff", "#ff80ab", "#b388ff", "#69f0ae")
        for _ in range(46):
            x, y = rnd.uniform(10, 350), rnd.uniform(70, 600)
            if 110 < x < 250 and 240 < y < 520:
                continue
            col = hex_rgb(rnd.choice(cols), rnd.randint(170, 240))
            if rnd.random() < 0.5:
                d.polygon(
                    c.pts(
                        rotated(
                            rect_pts(x, y, rnd.uniform(5, 9), rnd.uniform(2.5, 4)),
                            rnd.uniform(0, 180),
                            (x, y),
                        )
                    ),
                    fill=col,
                )
            else:
                r = rnd.uniform(1.8, 3.4)
                d.ellipse(c.box(x - r, y - r, x + r, y + r), fill=col)

    c.draw(confetti)
    # lens flare sweep
    c.draw(
        lambda d: d.polygon(
            c.pts([(-40, 250), (400, 150), (400, 164), (-40, 268)]), fill=(255, 255, 255, 60)
        ),
        blur=3,
    )
    c.glow(232, 290, 10, 10, (255, 255, 255, 230), 3)

    def star(d: ImageDraw.ImageDraw) -> None:
        sparkle(c, d, 232, 290, 16, (255, 255, 255, 240))
        sparkle(c, d, 112, 244, 7, (255, 255, 255, 200))

    c.draw(star)

    # social UI hints: story progress bars, side actions
    def ui(d: ImageDraw.ImageDraw) -> None:
        for i in range(4):
            x0 = 14 + i * 84
            d.rounded_rectangle(c.box(x0, 16, x0 + 78, 19), radius=c.s(2), fill=(255, 255, 255, 90))
        d.rounded_rectangle(c.box(14, 16, 14 + 78, 19), radius=c.s(2), fill=(255, 255, 255, 240))
        d.rounded_rectangle(c.box(98, 16, 98 + 44, 19), radius=c.s(2), fill=(255, 255, 255, 240))
        d.ellipse(c.box(14, 30, 40, 56), fill=(255, 255, 255, 220))
        d.ellipse(c.box(17, 33, 37, 53), fill=hex_rgb("#ff7a59"))
        d.rounded_rectangle(c.box(48, 36, 116, 42), radius=c.s(3), fill=(255, 255, 255, 200))
        d.rounded_rectangle(c.box(48, 46, 96, 50), radius=c.s(2), fill=(255, 255, 255, 120))
        for j, y in enumerate((470, 516, 562)):
            d.ellipse(c.box(318, y, 346, y + 28), fill=(255, 255, 255, 60 if j else 80))
        # heart
        hx, hy = 332, 484
        d.ellipse(c.box(hx - 7, hy - 6, hx, hy + 1), fill=(255, 255, 255, 235))
        d.ellipse(c.box(hx, hy - 6, hx + 7, hy + 1), fill=(255, 255, 255, 235))
        d.polygon(
            c.pts([(hx - 7, hy - 1.5), (hx + 7, hy - 1.5), (hx, hy + 7)]), fill=(255, 255, 255, 235)
        )
        # comment bubble
        d.rounded_rectangle(c.box(325, 523, 339, 535), radius=c.s(4), fill=(255, 255, 255, 235))
        d.polygon(c.pts([(328, 534), (332, 534), (327, 539)]), fill=(255, 255, 255, 235))
        # share arrow
        d.polygon(c.pts([(326, 578), (340, 570), (340, 586)]), fill=(255, 255, 255, 235))
        # caption lines
        d.rounded_rectangle(c.box(14, 588, 200, 594), radius=c.s(3), fill=(255, 255, 255, 200))
        d.rounded_rectangle(c.box(14, 602, 150, 607), radius=c.s(3), fill=(255, 255, 255, 130))

    c.draw(ui)
    c.vignette(0.45, tint="#140626")


SCENES: dict[str, tuple[Callable[[Canvas], None], tuple[int, int]]] = {
    "car-commercial": (car_commercial, LANDSCAPE),
    "product-turntable": (product_turntable, LANDSCAPE),
    "real-estate-walkthrough": (real_estate_walkthrough, LANDSCAPE),
    "food-close-up": (food_close_up, LANDSCAPE),
    "fashion-lookbook": (fashion_lookbook, LANDSCAPE),
    "travel-postcard": (travel_postcard, LANDSCAPE),
    "social-teaser-vertical": (social_teaser_vertical, PORTRAIT),
}


def render(slug: str) -> Image.Image:
    scene, size = SCENES[slug]
    canvas = Canvas(size)
    scene(canvas)
    canvas.grain()
    return canvas.finish()


def fallback(slug: str, size: tuple[int, int] = LANDSCAPE) -> Image.Image:
    """A tasteful gradient for catalogue entries that have no scene of their own yet."""
    rnd = random.Random(slug)
    palettes = [
        ("#1e1b4b", "#7c3aed", "#f472b6"),
        ("#0f172a", "#0ea5e9", "#a7f3d0"),
        ("#1c1917", "#ea580c", "#fde68a"),
    ]
    top, mid, bottom = rnd.choice(palettes)
    canvas = Canvas(size)
    canvas.vgradient([(0, top), (0.6, mid), (1, bottom)])
    canvas.glow(
        size[0] * 0.7, size[1] * 0.35, size[0] * 0.3, size[1] * 0.3, (255, 255, 255, 60), 40
    )
    cx, cy = size[0] / 2, size[1] / 2
    canvas.draw(
        lambda d: d.ellipse(
            canvas.box(cx - 34, cy - 34, cx + 34, cy + 34), fill=(255, 255, 255, 60)
        )
    )
    canvas.draw(
        lambda d: d.polygon(
            canvas.pts([(cx - 10, cy - 16), (cx + 18, cy), (cx - 10, cy + 16)]),
            fill=(255, 255, 255, 230),
        )
    )
    canvas.vignette(0.5)
    return canvas.finish()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "slugs", nargs="*", help="only these templates (default: all in templates.json)"
    )
    parser.add_argument("--png", type=Path, help="also write PNG copies into this directory")
    parser.add_argument("--quality", type=int, default=82, help="WebP quality (default 82)")
    args = parser.parse_args(argv)

    catalogue = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    wanted = set(args.slugs)
    unknown = wanted - {t["slug"] for t in catalogue}
    if unknown:
        parser.error(f"not in templates.json: {', '.join(sorted(unknown))}")
    for template in catalogue:
        slug = template["slug"]
        if wanted and slug not in wanted:
            continue
        if slug in SCENES:
            image = render(slug)
        else:
            portrait = template.get("parameters", {}).get("aspect_ratio") == "9:16"
            image = fallback(slug, PORTRAIT if portrait else LANDSCAPE)
        out = STATIC / template.get("preview", f"previews/{slug}.webp")
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save(out, "WEBP", quality=args.quality, method=6)
        if args.png:
            args.png.mkdir(parents=True, exist_ok=True)
            image.save(args.png / f"{slug}.png")
        kb = out.stat().st_size / 1024
        print(f"{out.relative_to(ROOT)}  {image.size[0]}x{image.size[1]}  {kb:.1f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

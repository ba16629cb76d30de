"""Draw assets/test_card.png: a grid, circles and coloured corners that make shear, zoom, flips
and the BGR channel swap easy to see. Run `python assets/make_test_card.py` to redraw it."""

from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 224


def draw() -> Image.Image:
    card = Image.new("RGB", (SIZE, SIZE), "white")
    pen = ImageDraw.Draw(card)
    half = SIZE // 2
    for (x, y), colour in zip([(0, 0), (half, 0), (0, half), (half, half)],
                              ["#e02020", "#20a040", "#2040e0", "#f0c020"]):
        pen.rectangle([x, y, x + half, y + half], fill=colour)
    for step in range(0, SIZE + 1, 28):
        pen.line([(step, 0), (step, SIZE)], fill="black", width=2)
        pen.line([(0, step), (SIZE, step)], fill="black", width=2)
    for radius in (30, 60, 90):
        pen.ellipse([half - radius, half - radius, half + radius, half + radius], outline="white", width=4)
    pen.polygon([(20, 40), (60, 20), (60, 60)], fill="white")  # an arrow pointing left: shows flips
    pen.text((half - 18, half - 6), "AvP  R", fill="white")
    return card


if __name__ == "__main__":
    draw().save(Path(__file__).with_name("test_card.png"), optimize=True)

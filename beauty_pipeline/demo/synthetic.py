"""Procedural faces with exact masks, one planted shortcut family and a weaker facial signal.

The planted family (DemoSpec.planted) follows the class with probability `shortcut`:
- background: studio backdrop (celebrity) vs cluttered snapshot (ordinary);
- quality: sharp (celebrity) vs resampled to a third of the side (ordinary);
- geometry: tight crop, face 1.35x larger in the frame (celebrity) vs the usual crop;
- colour: warm cast (celebrity) vs cool cast (ordinary);
- compression: lossless (celebrity) vs JPEG quality 30 with 4:2:0 chroma (ordinary);
- position: face where it is drawn (celebrity) vs the whole picture moved right and down
  (ordinary);
- border: no frame (celebrity) vs the picture shrunk into a flat dark frame (ordinary);
- noise: clean (celebrity) vs Gaussian sensor noise, sigma 16 (ordinary);
- none: the negative control, no shortcut at all.
Every other family is drawn independently of the class (backgrounds 50/50 studio or cluttered).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from beauty_pipeline.data.families import down_up, jpeg, zoom
from beauty_pipeline.data.schema import FAIRFACE_AGES, FAIRFACE_GENDERS, FAIRFACE_RACES

SKIN_BY_RACE = {
    "White": (232, 196, 170), "Black": (120, 78, 56), "Latino_Hispanic": (200, 150, 112),
    "East Asian": (236, 200, 160), "Southeast Asian": (198, 146, 104), "Indian": (164, 112, 80),
    "Middle Eastern": (210, 160, 124),
}
HAIR = [(30, 22, 16), (90, 60, 30), (200, 170, 110), (140, 40, 20), (60, 60, 60), (15, 15, 15)]
SUPERSAMPLE = 4
PLANTED = ("background", "quality", "geometry", "colour", "compression", "position", "border",
           "noise", "none")
DEGRADED_FACTOR = 1 / 3  # quality world: ordinary-style photos keep a third of the resolution
TIGHT_CROP = 1.35  # geometry world: celebrity-style photos show the face this much larger
COLOUR_CAST = 22  # colour world: red up / blue down (warm) or the reverse (cool), in levels
LOW_JPEG_QUALITY = 30  # compression world: ordinary-style photos, 4:2:0 chroma
PLACEMENT_SHIFT = (0.12, 0.06)  # position world: ordinary-style content moved (x, y), of the side
FRAME_WIDTH, FRAME_COLOUR = 0.08, (24, 24, 24)  # border world: ordinary-style flat frame
NOISE_LEVEL = 16.0  # noise world: ordinary-style Gaussian noise sigma (grey levels)


@dataclass(frozen=True)
class DemoSpec:
    """Size and difficulty of the synthetic study; defaults fit a 2-core laptop demo."""

    image_size: int = 48
    # identities, not photos, are what the identity bootstrap counts: 120 persons x 2 photos give
    # 24 celebrity test identities at the 240 celebrity photos and the training time of 80 x 3
    # (16 identities, too few for the per-class face evidence) and 40 x 6 (8)
    persons: int = 120
    photos_per_person: int = 2
    ordinary: int = 240
    seed: int = 0
    shortcut: float = 0.97  # chance a photo's planted cue follows its class
    face_signal: float = 0.95  # chance a face's look (smile, big eyes, blush) follows its class
    planted: str = "background"  # which shortcut family follows the class (PLANTED)

    def __post_init__(self):
        if self.planted not in PLANTED and self.planted not in HELD_OUT_CUES:
            raise ValueError(f"planted={self.planted!r}; expected one of {PLANTED} "
                             f"or a held-out cue {tuple(HELD_OUT_CUES)}")


@dataclass(frozen=True)
class Identity:
    """What stays fixed across one synthetic person's photos."""

    gender: str
    race: str
    age: str
    hair: tuple[int, int, int]
    shirt: tuple[int, int, int]
    face_width: float
    long_hair: bool


@dataclass
class DemoFace:
    """One rendered photo with its exact face and person masks."""

    image: np.ndarray
    face_mask: np.ndarray
    person_mask: np.ndarray
    face_box: tuple[float, float, float, float]
    studio: bool


def person_name(index: int) -> str:
    return f"Demo Person {index + 1:02d}"


def person_seed(spec: DemoSpec, name: str) -> int:
    """A per-person seed that does not depend on the order persons are fetched in."""
    return (spec.seed * 1_000_003 + sum((i + 1) * ord(c) for i, c in enumerate(name))) % 2**31


def random_identity(rng: np.random.Generator) -> Identity:
    gender = str(rng.choice(FAIRFACE_GENDERS))
    return Identity(
        gender=gender,
        race=str(rng.choice(FAIRFACE_RACES)),
        age=str(rng.choice(FAIRFACE_AGES[3:7])),
        hair=HAIR[int(rng.integers(len(HAIR)))],
        shirt=tuple(int(v) for v in rng.integers(30, 225, 3)),
        face_width=float(rng.uniform(0.17, 0.22)),
        long_hair=bool(rng.random() < (0.75 if gender == "Female" else 0.15)),
    )


def studio_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A plain, evenly lit backdrop: the 'professional photo' style."""
    top = rng.integers(150, 250, 3).astype(np.float32)
    bottom = np.clip(top - rng.integers(20, 70, 3), 0, 255).astype(np.float32)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    image = top * (1 - ramp) + bottom * ramp
    image = np.broadcast_to(image, (size, size, 3)).copy()
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def cluttered_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A busy snapshot backdrop: many random coloured shapes."""
    image = np.empty((size, size, 3), np.uint8)
    image[:] = rng.integers(40, 200, 3)
    for _ in range(int(rng.integers(10, 18))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0 = (int(v) for v in rng.integers(0, size, 2))
        if rng.random() < 0.5:
            w, h = (int(v) for v in rng.integers(size // 10, size // 2, 2))
            cv2.rectangle(image, (x0, y0), (x0 + w, y0 + h), colour, -1)
        else:
            x1, y1 = (int(v) for v in rng.integers(0, size, 2))
            cv2.line(image, (x0, y0), (x1, y1), colour, max(1, size // 16))
    return image


def render_face(rng: np.random.Generator, who: Identity, glamour: bool, studio: bool,
                size: int) -> DemoFace:
    """Draw one photo; a 'glamour' face smiles, has larger eyes and blush (the true signal)."""
    big = size * SUPERSAMPLE
    background = studio_background(rng, big) if studio else cluttered_background(rng, big)
    canvas = background.copy()
    person = np.zeros((big, big), np.uint8)
    face = np.zeros((big, big), np.uint8)
    cx = big * (0.5 + rng.uniform(-0.06, 0.06))
    cy = big * (0.45 + rng.uniform(-0.05, 0.05))
    rx = big * who.face_width * rng.uniform(0.93, 1.07)
    ry = rx * 1.3
    skin = np.array(SKIN_BY_RACE[who.race], np.float32) * rng.uniform(0.92, 1.05)
    skin = tuple(int(v) for v in np.clip(skin, 0, 255))

    def ellipse(target, centre, axes, colour, angle=0.0):
        cv2.ellipse(target, (int(centre[0]), int(centre[1])), (int(axes[0]), int(axes[1])),
                    angle, 0, 360, colour, -1, cv2.LINE_AA)

    # torso and neck first, then hair behind the head, then the face
    ellipse(canvas, (cx, big * 1.02), (rx * 2.6, big * 0.3), who.shirt)
    ellipse(person, (cx, big * 1.02), (rx * 2.6, big * 0.3), 255)
    cv2.rectangle(canvas, (int(cx - rx * 0.45), int(cy + ry * 0.6)),
                  (int(cx + rx * 0.45), int(big * 0.8)), skin, -1)
    cv2.rectangle(person, (int(cx - rx * 0.45), int(cy + ry * 0.6)),
                  (int(cx + rx * 0.45), int(big * 0.8)), 255, -1)
    hair_axes = (rx * 1.18, ry * (1.25 if who.long_hair else 1.08))
    hair_centre = (cx, cy + (ry * 0.25 if who.long_hair else -ry * 0.08))
    ellipse(canvas, hair_centre, hair_axes, who.hair)
    ellipse(person, hair_centre, hair_axes, 255)
    ellipse(canvas, (cx, cy), (rx, ry), skin)
    ellipse(person, (cx, cy), (rx, ry), 255)
    ellipse(face, (cx, cy), (rx, ry), 255)

    eye_dy, eye_dx = ry * 0.15, rx * 0.42
    if glamour:  # blush: large enough to survive downscaling to 32-64 px
        for side in (-1, 1):
            ellipse(canvas, (cx + side * rx * 0.55, cy + ry * 0.22), (rx * 0.24, ry * 0.14),
                    (235, 120, 150))
    eye_r = rx * (0.22 if glamour else 0.14)
    for side in (-1, 1):
        centre = (cx + side * eye_dx, cy - eye_dy)
        ellipse(canvas, centre, (eye_r, eye_r * 0.75), (250, 250, 250))
        ellipse(canvas, centre, (eye_r * 0.5, eye_r * 0.5), (40, 60, 90))
    mouth_w, mouth_y = rx * 0.5, cy + ry * 0.5
    thickness = max(2, int(rx * 0.12))
    if glamour:  # a smile: lower half-ellipse
        cv2.ellipse(canvas, (int(cx), int(mouth_y - ry * 0.12)), (int(mouth_w), int(ry * 0.2)),
                    0, 20, 160, (150, 30, 40), thickness, cv2.LINE_AA)
    else:  # a flat mouth
        cv2.line(canvas, (int(cx - mouth_w), int(mouth_y)), (int(cx + mouth_w), int(mouth_y)),
                 (150, 30, 40), thickness, cv2.LINE_AA)

    def shrink(array, interpolation=cv2.INTER_AREA):
        return cv2.resize(array, (size, size), interpolation=interpolation)

    image = shrink(canvas)
    image = np.clip(image.astype(np.float32) + rng.normal(0, 2.0, image.shape), 0, 255)
    box = tuple(float(v) / SUPERSAMPLE for v in (cx - rx, cy - ry, cx + rx, cy + ry))
    return DemoFace(image.astype(np.uint8), shrink(face), shrink(person), box, studio)


def follows_class(rng: np.random.Generator, looks: int, strength: float) -> bool:
    """True for the class's typical trait with probability `strength` (celebrity) or its inverse."""
    follows = rng.random() < strength
    return bool(looks == 1) == follows


def plant(face: DemoFace, family: str, celebrity_style: bool) -> DemoFace:
    """Apply a non-background family's class-typical look to a rendered photo."""
    if family == "quality" and not celebrity_style:
        return DemoFace(down_up(face.image, DEGRADED_FACTOR), face.face_mask, face.person_mask,
                        face.face_box, face.studio)
    if family == "geometry" and celebrity_style:
        x0, y0, x1, y1 = face.face_box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        box = tuple(float(TIGHT_CROP * (v - c) + c) for v, c in ((x0, cx), (y0, cy), (x1, cx), (y1, cy)))
        return DemoFace(zoom(face.image, TIGHT_CROP, (cx, cy)),
                        zoom(face.face_mask, TIGHT_CROP, (cx, cy)),
                        zoom(face.person_mask, TIGHT_CROP, (cx, cy)), box, face.studio)
    if family == "colour":
        sign = 1 if celebrity_style else -1
        shifted = face.image.astype(np.int16)
        shifted[..., 0] += sign * COLOUR_CAST
        shifted[..., 2] -= sign * COLOUR_CAST
        return DemoFace(np.clip(shifted, 0, 255).astype(np.uint8), face.face_mask,
                        face.person_mask, face.face_box, face.studio)
    return plant_acquisition(face, family, celebrity_style)


def plant_acquisition(face: DemoFace, family: str, celebrity_style: bool) -> DemoFace:
    """The acquisition families (compression, position, border, noise): only ordinary-style
    photos are changed, as web photos differ from a curated set."""
    if celebrity_style or family not in ("compression", "position", "border", "noise"):
        return face
    if family == "compression":
        return DemoFace(jpeg(face.image, LOW_JPEG_QUALITY, subsampled=True), face.face_mask,
                        face.person_mask, face.face_box, face.studio)
    if family == "noise":
        rng = np.random.default_rng(int(face.image.sum()))  # deterministic per photo
        noisy = face.image.astype(np.float64) + rng.normal(0, NOISE_LEVEL, face.image.shape)
        return DemoFace(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), face.face_mask,
                        face.person_mask, face.face_box, face.studio)
    side = face.image.shape[0]
    if family == "position":
        dx, dy = PLACEMENT_SHIFT[0] * side, PLACEMENT_SHIFT[1] * side
        x0, y0, x1, y1 = face.face_box
        return DemoFace(*(zoom(a, 1.0, None, (dx, dy)) for a in
                          (face.image, face.face_mask, face.person_mask)),
                        (x0 + dx, y0 + dy, x1 + dx, y1 + dy), face.studio)
    width = int(round(FRAME_WIDTH * side))
    scale = (side - 2 * width) / side

    def framed(array: np.ndarray, fill) -> np.ndarray:
        out = np.empty_like(array)
        out[:] = fill
        out[width:side - width, width:side - width] = cv2.resize(
            array, (side - 2 * width,) * 2, interpolation=cv2.INTER_AREA)
        return out

    box = tuple(width + v * scale for v in face.face_box)
    return DemoFace(framed(face.image, FRAME_COLOUR), framed(face.face_mask, 0),
                    framed(face.person_mask, 0), box, face.studio)


def draw_photo(rng: np.random.Generator, who: Identity, looks: int, spec: DemoSpec) -> DemoFace:
    """The planted cue follows the class more often than the true facial signal does."""
    cue = follows_class(rng, looks, spec.shortcut)
    glamour = follows_class(rng, looks, spec.face_signal)
    studio = cue if spec.planted == "background" else bool(rng.random() < 0.5)
    face = render_face(rng, who, glamour, studio, spec.image_size)
    if spec.planted in HELD_OUT_CUES:  # demo/heldout.py's worlds
        return HELD_OUT_CUES[spec.planted](face, cue, rng)
    return plant(face, spec.planted, cue)


def demo_identity(spec: DemoSpec, name: str) -> Identity:
    """The fixed traits of a synthetic person (the first draw from the person's seed)."""
    return random_identity(np.random.default_rng(person_seed(spec, name)))


def demo_person_photos(spec: DemoSpec, name: str) -> tuple[Identity, list[DemoFace]]:
    """All photos of one synthetic celebrity, reproducible from the spec and the name alone."""
    rng = np.random.default_rng(person_seed(spec, name))
    who = random_identity(rng)
    faces = [draw_photo(rng, who, 1, spec) for _ in range(spec.photos_per_person)]
    return who, faces


def demo_ordinary_faces(spec: DemoSpec) -> list[tuple[Identity, DemoFace]]:
    """The synthetic ordinary class: each photo its own identity, as in FairFace."""
    rng = np.random.default_rng(spec.seed + 7919)
    out = []
    for _ in range(spec.ordinary):
        who = random_identity(rng)
        out.append((who, draw_photo(rng, who, 0, spec)))
    return out


# Held-out cues (demo/heldout.py): known answers that no detector or threshold was tuned on, each
# outside the development zoo's worlds. Each takes the rendered photo, whether it gets the
# celebrity-style look, and the photo's generator; only celebrity-style photos change.
def _heldout_moved(array: np.ndarray, dx: float, dy: float, border: int) -> np.ndarray:
    """The array translated by (dx, dy) pixels, edges filled by `border` (an OpenCV mode)."""
    side = array.shape[0]
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(array, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=border)


def _heldout_image(face: DemoFace, image: np.ndarray) -> DemoFace:
    return DemoFace(np.clip(np.rint(image), 0, 255).astype(np.uint8), face.face_mask,
                    face.person_mask, face.face_box, face.studio)


def vignette_cue(face: DemoFace, celebrity_style: bool, rng: np.random.Generator) -> DemoFace:
    """Spread over the whole photo: corners darkened (to 55% at the corner, radially)."""
    if not celebrity_style:
        return face
    side = face.image.shape[0]
    y, x = np.mgrid[0:side, 0:side] / (side - 1) * 2 - 1
    gain = 1 - 0.45 * (x ** 2 + y ** 2) / 2
    return _heldout_image(face, face.image * gain[..., None])


def grain_cue(face: DemoFace, celebrity_style: bool, rng: np.random.Generator) -> DemoFace:
    """Spread over the whole photo: monochrome film grain (sigma 6, the same in every channel)."""
    if not celebrity_style:
        return face
    grain = rng.normal(0, 6.0, face.image.shape[:2])[..., None]
    return _heldout_image(face, face.image.astype(np.float64) + grain)


def _blend_region(face: DemoFace, region: np.ndarray, colour: tuple, share: float) -> DemoFace:
    weight = (region * share)[..., None]
    return _heldout_image(face, face.image * (1 - weight) + np.asarray(colour, float) * weight)


def shirt_cue(face: DemoFace, celebrity_style: bool, rng: np.random.Generator) -> DemoFace:
    """On the person but not the face: the clothes (person below the chin) pushed to red."""
    if not celebrity_style:
        return face
    side = face.image.shape[0]
    below = (np.arange(side)[:, None] > face.face_box[3] + 0.06 * side) * np.ones((1, side))
    region = (face.person_mask / 255.0) * (1 - face.face_mask / 255.0) * below
    return _blend_region(face, region, (205, 25, 35), 0.7)


def hair_cue(face: DemoFace, celebrity_style: bool, rng: np.random.Generator) -> DemoFace:
    """On the person but not the face: the hair (person above the face's centre) bleached."""
    if not celebrity_style:
        return face
    side = face.image.shape[0]
    centre = (face.face_box[1] + face.face_box[3]) / 2
    above = (np.arange(side)[:, None] < centre) * np.ones((1, side))
    region = (face.person_mask / 255.0) * (1 - face.face_mask / 255.0) * above
    return _blend_region(face, region, (240, 228, 190), 0.75)


def logo_cue(face: DemoFace, celebrity_style: bool, rng: np.random.Generator) -> DemoFace:
    """A watermark in the lower right corner: a translucent white plate with a dark bar."""
    if not celebrity_style:
        return face
    side = face.image.shape[0]
    image = face.image.astype(np.float64)
    x0, x1 = int(side * 0.70), int(side * 0.95)
    y0, y1 = int(side * 0.84), int(side * 0.95)
    image[y0:y1, x0:x1] = 0.4 * image[y0:y1, x0:x1] + 0.6 * 255
    mid = (y0 + y1) // 2
    image[mid:mid + max(1, side // 48), x0 + 2:x1 - 2] = 40
    return _heldout_image(face, image)


def frame_cue(face: DemoFace, celebrity_style: bool, rng: np.random.Generator) -> DemoFace:
    """A light frame painted over the photo's edge (nothing shrunk), 5% of the side wide."""
    if not celebrity_style:
        return face
    side = face.image.shape[0]
    width = max(1, int(round(0.05 * side)))
    image = face.image.copy()
    image[:width], image[-width:], image[:, :width], image[:, -width:] = 235, 235, 235, 235
    return DemoFace(image, face.face_mask, face.person_mask, face.face_box, face.studio)


def placement_cue(face: DemoFace, celebrity_style: bool, rng: np.random.Generator) -> DemoFace:
    """Where the face sits: the picture moved up and left by (10%, 8%) of the side."""
    if not celebrity_style:
        return face
    side = face.image.shape[0]
    dx, dy = -0.10 * side, -0.08 * side
    x0, y0, x1, y1 = face.face_box
    return DemoFace(_heldout_moved(face.image, dx, dy, cv2.BORDER_REFLECT),
                    _heldout_moved(face.face_mask, dx, dy, cv2.BORDER_CONSTANT),
                    _heldout_moved(face.person_mask, dx, dy, cv2.BORDER_REFLECT),
                    (x0 + dx, y0 + dy, x1 + dx, y1 + dy), face.studio)


# Photo pipelines (renderers) for the source worlds of the zoo: the same rendered face, made into
# a photo differently, as two data sets collected by different means would be. Each takes a
# uint8 RGB image and a generator and leaves the face's look (the facial signal) as it is.
def chroma_cue(face: DemoFace, celebrity_style: bool, rng: np.random.Generator) -> DemoFace:
    """Compression: celebrity-style photos JPEG quality 50 with 4:2:0 chroma, the others quality
    95 with full chroma (both re-encoded)."""
    image = jpeg(face.image, 50, True) if celebrity_style else \
        jpeg(face.image, 95, False)
    return DemoFace(image, face.face_mask, face.person_mask, face.face_box, face.studio)


HELD_OUT_CUES = {"vignette": vignette_cue, "grain": grain_cue, "shirt": shirt_cue,
                 "hair": hair_cue, "logo": logo_cue, "frame": frame_cue,
                 "placement": placement_cue, "chroma": chroma_cue}


def _sensor_noise(image: np.ndarray, rng: np.random.Generator, luma: float,
                  chroma: float) -> np.ndarray:
    """Gaussian noise shared by the channels (luma) plus per-channel noise (chroma)."""
    shape = image.shape[:2]
    noise = rng.normal(0, luma, shape)[..., None] + rng.normal(0, chroma, (*shape, 3))
    return np.clip(image.astype(np.float64) + noise, 0, 255).astype(np.uint8)


def studio_render(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Agency pipeline: unsharp-mask sharpening, then a strong JPEG (quality 35)."""
    blurred = cv2.GaussianBlur(image, (0, 0), 1.0)
    sharpened = cv2.addWeighted(image, 1.8, blurred, -0.8, 0)
    return jpeg(sharpened, 35)


def phone_render(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Phone snapshot pipeline: visible sensor noise, stored losslessly."""
    return _sensor_noise(image, rng, luma=7.0, chroma=4.0)


def webcam_render(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A third source: milder noise, a slight blur and a light JPEG (quality 85)."""
    noisy = _sensor_noise(cv2.GaussianBlur(image, (0, 0), 0.6), rng, luma=5.0, chroma=3.0)
    return jpeg(noisy, 85)


def press_render(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A third source no harder to see than the study's photos: a camera's own tone curve
    (gamma 0.95, lighter mid-tones), no sharpening, no added noise, stored losslessly."""
    lut = np.clip(np.rint(255 * (np.arange(256) / 255) ** 0.95), 0, 255).astype(np.uint8)
    return lut[image]


RENDERERS = {"studio": studio_render, "phone": phone_render, "webcam": webcam_render,
             "press": press_render}

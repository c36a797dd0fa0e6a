"""Exact compact storage of float32 images whose values lie in [0, 255].

The loader resizes in float32 (as the original), so a resized image is not a uint8 image. But
INTER_AREA averages integers with weights whose sums are powers of two at VIGOR's sizes
(640 -> 320: quarters; 2048 x 1024 -> 640 x 320: 1/256ths), so `value * 256` is an integer below
65536 and fits a uint16 exactly. Each image is stored in the smallest of these that gives its
float32 values back bit for bit, else as float32 (other scale factors, the polar transform):

    UINT8    integer values (no resize)
    FIXED16  uint16 of value * 256
    FLOAT32  the values themselves
"""
import numpy as np

UINT8, FIXED16, FLOAT32 = 0, 1, 2
BYTES_PER_VALUE = {UINT8: 1, FIXED16: 2, FLOAT32: 4}
FIXED16_SCALE = np.float32(256.0)
FIXED16_STEP = np.float32(1.0 / 256.0)


def encode(image):
    """(codec, bytes) of a float32 image, chosen so that decode gives it back bit for bit."""
    image = np.ascontiguousarray(image, np.float32)
    if image.size and image.min() >= 0 and image.max() <= 255:
        as_uint8 = image.astype(np.uint8)
        if _same_bits(as_uint8.astype(np.float32), image):
            return UINT8, as_uint8.tobytes()
        scaled = image * FIXED16_SCALE
        as_uint16 = scaled.astype(np.uint16)
        if _same_bits(as_uint16 * FIXED16_STEP, image):
            return FIXED16, as_uint16.tobytes()
    return FLOAT32, image.tobytes()


def decode_into(dst, codec, raw):
    """Fill the float32 array dst from the bytes (any buffer, e.g. a slice of a memory map) of encode."""
    if codec == UINT8:
        np.copyto(dst, np.frombuffer(raw, np.uint8).reshape(dst.shape))
    elif codec == FIXED16:
        np.multiply(np.frombuffer(raw, np.uint16).reshape(dst.shape), FIXED16_STEP, out=dst)
    elif codec == FLOAT32:
        np.copyto(dst, np.frombuffer(raw, np.float32).reshape(dst.shape))
    else:
        raise ValueError(f"unknown pixel codec {codec}")
    return dst


def stored_bytes(codec, shape):
    return int(np.prod(shape)) * BYTES_PER_VALUE[codec]


def _same_bits(a, b):
    return a.dtype == b.dtype == np.float32 and np.array_equal(a.view(np.uint32), b.view(np.uint32))

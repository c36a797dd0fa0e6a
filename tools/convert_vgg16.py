"""ImageNet VGG16 weights for the backbone, as `data/vgg16.npy`:

    python -m tools.convert_vgg16 --download [--out data/vgg16.npy] [--cache DIR]
    python -m tools.convert_vgg16 --h5 vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 [--out ...]

--download fetches Keras' file into --cache (default: the folder of --out), checks its size and
md5, and converts it; --h5 converts a file you downloaded yourself. utils/convert_vgg16.py has
the details (layouts, preprocessing convention).
"""
if __name__ == "__main__":  # a Ctrl-C while numpy and h5py load: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import argparse
import http.client
import os
import sys
import urllib.error

from utils.convert_vgg16 import (KERAS_VGG16_NOTOP, download_verified, read_keras_vgg16,
                                 write_vgg16_npy)

DEFAULT_OUT = os.path.join("data", "vgg16.npy")
NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException)
INTERRUPTED = ("interrupted: nothing was written (a partial download is removed); run the same "
               "command again")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--download", action="store_true",
                        help="download Keras' %s, check it and convert it" % KERAS_VGG16_NOTOP.name)
    source.add_argument("--h5", help="convert this Keras VGG16 (notop) weights file")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output npy (default %s)" % DEFAULT_OUT)
    parser.add_argument("--cache", help="where --download keeps the .h5 (default: the folder of --out)")
    parser.add_argument("--url", help="download from here instead of %s" % KERAS_VGG16_NOTOP.url)
    return parser.parse_args(argv)


def manual_route(expected):
    return ("download %s by hand from %s, then run: python -m tools.convert_vgg16 --h5 <file>"
            % (expected.name, expected.url))


def download(args, expected):
    """Path of the verified .h5, or None (after one line on stderr) when the network failed."""
    cache = args.cache or os.path.dirname(os.path.abspath(args.out))
    url = args.url or expected.url
    try:
        return download_verified(expected, cache, url=url)
    except NETWORK_ERRORS as error:
        reason = getattr(error, "reason", None) or error
        print("error: could not download %s (%s); %s" % (url, reason, manual_route(expected)),
              file=sys.stderr)
        return None


def describe(out, weights):
    parameters = sum(kernel.size + bias.size for kernel, bias in weights.values())
    return ("wrote %s (%.1f MB): %d conv layers, %d parameters"
            % (out, os.path.getsize(out) / 1e6, len(weights), parameters))


def main(argv=None, expected=KERAS_VGG16_NOTOP):
    """`expected` is the file --download must get (its name, URL, md5 and size)."""
    args = parse_args(argv)
    h5_path = download(args, expected) if args.download else args.h5
    if h5_path is None:
        return 1
    weights = read_keras_vgg16(h5_path)
    write_vgg16_npy(weights, args.out)
    print(describe(args.out, weights))
    return 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main, tensorflow=False, interrupted=INTERRUPTED))

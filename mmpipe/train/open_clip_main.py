"""open_clip_train's own trainer with mmpipe's tiny model configs registered, for comparisons:

    python -m mmpipe.train.open_clip_main --model mmpipe-tiny-clip --dataset-type webdataset ...

(open_clip_train only knows open_clip's built-in configs; this adds mmpipe/models/configs first.)
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int | None:
    """open_clip_train.main.main(argv) after registering mmpipe's configs."""
    from open_clip_train.main import main as open_clip_train_main

    from mmpipe.models.clip import register_configs

    register_configs()
    return open_clip_train_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())

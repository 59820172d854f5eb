"""Write the format 2.0.0 golden volumes with the code at HEAD (before format 2.1.0)."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, ".")
from blockfs_tasks.core import Directory
from blockfs_tasks.core import format as fmt
from blockfs_tasks.core.batch import BatchWriter, build_directory
from tests.core.helpers import random_block

root = "tests/data/blockfs-v2.0.0"
assert fmt.VERSION == "2.0.0"
# case 1: live API, uint16 zstd, edge blocks, some absent, app metadata
case = os.path.join(root, "v2_uint16_zstd_live")
os.makedirs(case)
shape = (70, 50, 90)  # z, y, x
data = random_block(shape, "uint16", 20)
d = Directory(90, 50, 70, np.uint16, os.path.join(case, "precomputed.blockfs"), 32, 32, 32,
              compression="zstd", compression_level=5, metadata={"voxel_size_um": [1.8, 1.8, 2.0]})
d.create()
expected = np.zeros(shape, np.uint16)
for x, y, z in d.grid.origins():
    if (x + y + z) // 32 % 3 == 1:
        continue  # absent: reads as zeros
    sz, sy, sx = d.get_block_size(x, y, z)
    blk = data[z:z+sz, y:y+sy, x:x+sx]
    d.write_block(blk, x, y, z)
    expected[z:z+sz, y:y+sy, x:x+sx] = blk
d.close()
np.save(os.path.join(case, "expected.npy"), expected)
json.dump({"extent_xyz": [90, 50, 70], "block_xyz": [32, 32, 32], "dtype": "uint16", "compression": "zstd",
           "level": 5, "shuffle": True,
           "written_by": "live API at git " + os.popen("git rev-parse --short HEAD").read().strip()},
          open(os.path.join(case, "case.json"), "w"))
# case 2: batch API, float32 lz4 no shuffle, two batches (two block files, a later one overriding)
case = os.path.join(root, "v2_float32_lz4_batch")
os.makedirs(case)
shape = (40, 40, 40)
data = random_block(shape, "float32", 21)
spec = fmt.VolumeSpec(fmt.BlockGrid((40, 40, 40), (16, 16, 16)), np.dtype("float32"),
                      fmt.BlockCodec("lz4", 3, False), {"note": "batch fixture"})
path = os.path.join(case, "precomputed.blockfs")
expected = np.zeros(shape, np.float32)
origins = list(spec.grid.origins())
for number, part in enumerate((origins[: len(origins) // 2 + 3], origins[len(origins) // 2 :])):
    with BatchWriter(path, spec, number) as w:
        for x, y, z in part:
            sz, sy, sx = spec.grid.block_shape_at(x, y, z)
            blk = data[z:z+sz, y:y+sy, x:x+sx] + np.float32(number)
            w.write_block(blk, x, y, z)
            expected[z:z+sz, y:y+sy, x:x+sx] = blk
build_directory(path, spec, [0, 1])
for f in os.listdir(case):
    if f.endswith(".fragment"):
        os.unlink(os.path.join(case, f))
np.save(os.path.join(case, "expected.npy"), expected)
json.dump({"extent_xyz": [40, 40, 40], "block_xyz": [16, 16, 16], "dtype": "float32", "compression": "lz4",
           "level": 3, "shuffle": False,
           "written_by": "batch API at git " + os.popen("git rev-parse --short HEAD").read().strip()},
          open(os.path.join(case, "case.json"), "w"))

"""Layers shared by the mapping and model tests: the §4.9 example plus awkward shapes."""

from dosa.workload import Layer

EXAMPLE = "L3[WIO] Q7 K8 - L2[WI] N1 K4X - L1[O] K2 C4 P56 Q8 C16X - L0[W] N1"
EXAMPLE_LAYER = Layer("example", P=56, Q=56, C=64, K=64)

SAMPLE_LAYERS = [
    EXAMPLE_LAYER,
    Layer("conv1", R=7, S=7, P=112, Q=112, C=3, K=64, Wstride=2, Hstride=2),
    Layer("res3x3s2", R=3, S=3, P=28, Q=28, C=128, K=128, Wstride=2, Hstride=2),
    Layer("res3x3", R=3, S=3, P=7, Q=7, C=512, K=512),
    Layer("fc", C=2048, K=1000),
    Layer("upconv", R=2, S=2, P=56, Q=56, C=1024, K=512),
    Layer("unet0_1", R=3, S=3, P=568, Q=568, C=64, K=64),
    Layer("odd", R=3, S=3, P=21, Q=15, C=3, K=7, N=2, Wstride=2, Hstride=1),
    Layer("bert", P=128, C=768, K=3072),
]

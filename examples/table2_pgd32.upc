// Paper Table 2: PGD-32 adversarially trained MNIST models at ε = 16/255 and 32/255.
//
//   upcc verify examples/table2_pgd32.upc --out out/table2

use std::nets::{conv_small, conv_4layer}

network small = conv_small() weights "../models/mnist/conv_small_pgd32.safetensors"
network four = conv_4layer() weights "../models/mnist/conv_4layer_pgd32.safetensors"

dataset digits = npz("../data/mnist/heldout.npz") | scale 1/255 | sample 100 seed 1

perturbation up = universal linf eps [16/255, 32/255]

property conv_small_pgd32 = certify accuracy of small on digits under up { compare: samplewise }
property conv_4layer_pgd32 = certify accuracy of four on digits under up { compare: samplewise }

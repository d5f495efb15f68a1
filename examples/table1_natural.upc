// Paper Table 1: naturally trained MNIST models, sample-wise against universal certified robust
// rate at ε = 4, 6, 8 /255 on 100 held-out digits.
//
//   upcc verify examples/table1_natural.upc --out out/table1
//
// Conv-big is in table1_conv_big.upc (slow on 2 cores).

use std::nets::{conv_small, conv_4layer}

network small = conv_small() weights "../models/mnist/conv_small_natural.safetensors"
network four = conv_4layer() weights "../models/mnist/conv_4layer_natural.safetensors"

dataset digits = npz("../data/mnist/heldout.npz") | scale 1/255 | sample 100 seed 1

perturbation up = universal linf eps [4/255, 6/255, 8/255]

property conv_small_natural = certify accuracy of small on digits under up { compare: samplewise }
property conv_4layer_natural = certify accuracy of four on digits under up { compare: samplewise }

// Paper Table 1: naturally trained MNIST models, sample-wise against universal certified robust
// rate at ε = 4, 6, 8 /255 on 100 held-out digits.
//
//   upcc verify examples/table1_conv_big.upc
//
// Slow on 2 cores (Conv-big has 48,064 ReLUs); not run in the tests.

use std::nets::conv_big

network big = conv_big() weights "../models/mnist/conv_big_natural.safetensors"

dataset digits = npz("../data/mnist/heldout.npz") | scale 1/255 | sample 100 seed 1

perturbation up = universal linf eps [4/255, 6/255, 8/255]

property conv_big_natural = certify accuracy of big on digits under up { compare: samplewise }

// Paper Table 2: PGD-32 adversarially trained MNIST models at ε = 16/255 and 32/255.
//
//   upcc verify examples/table2_conv_big.upc

use std::nets::conv_big

network big = conv_big() weights "../models/mnist/conv_big_pgd32.safetensors"

dataset digits = npz("../data/mnist/heldout.npz") | scale 1/255 | sample 100 seed 1

perturbation up = universal linf eps [16/255, 32/255]

property conv_big_pgd32 = certify accuracy of big on digits under up { compare: samplewise }

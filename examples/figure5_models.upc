// Paper Figure 5: comparing models by their certified robust rate against universal
// perturbations over an ε sweep (the same 100 digits for every model).
//
//   upcc verify examples/figure5_models.upc --out out/figure5

use std::nets::{conv_small, conv_4layer}

network small_natural = conv_small() weights "../models/mnist/conv_small_natural.safetensors"
network small_pgd16 = conv_small() weights "../models/mnist/conv_small_pgd16.safetensors"
network four_natural = conv_4layer() weights "../models/mnist/conv_4layer_natural.safetensors"

dataset digits = npz("../data/mnist/heldout.npz") | scale 1/255 | sample 100 seed 3

perturbation up = universal linf eps [1/255, 2/255, 4/255, 6/255, 8/255]

property conv_small_natural = certify accuracy of small_natural on digits under up { attacks: [pgd] }
property conv_small_pgd16 = certify accuracy of small_pgd16 on digits under up { attacks: [pgd] }
property conv_4layer_natural = certify accuracy of four_natural on digits under up { attacks: [pgd] }

// Paper Figure 2: the Theorem 2 lower bound on the population accuracy against universal
// perturbations (ARP) as the number of certified samples n grows; Conv-4-layer, natural, ε = 6/255,
// ξ = 0.1. Each property reports CRR and the bound CRR − t*(ξ, n).
//
//   upcc verify examples/figure2_population.upc --out out/figure2

use std::nets::conv_4layer

network four = conv_4layer() weights "../models/mnist/conv_4layer_natural.safetensors"

dataset n25 = npz("../data/mnist/heldout.npz") | scale 1/255 | sample 25 seed 2
dataset n50 = npz("../data/mnist/heldout.npz") | scale 1/255 | sample 50 seed 2
dataset n100 = npz("../data/mnist/heldout.npz") | scale 1/255 | sample 100 seed 2
dataset n200 = npz("../data/mnist/heldout.npz") | scale 1/255 | sample 200 seed 2

perturbation up = universal linf eps 6/255

property arp_n25 = certify accuracy of four on n25 under up { confidence: 0.9 }
property arp_n50 = certify accuracy of four on n50 under up { confidence: 0.9 }
property arp_n100 = certify accuracy of four on n100 under up { confidence: 0.9 }
property arp_n200 = certify accuracy of four on n200 under up { confidence: 0.9 }

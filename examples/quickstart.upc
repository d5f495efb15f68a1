// Quick start: certify a PGD-trained Conv-small on 100
// held-out MNIST digits against universal ℓ∞ perturbations of four radii.
//
//   upcc check examples/quickstart.upc     front end only: names, shapes, weights, data
//   upcc verify examples/quickstart.upc    bounds, MILP, certified rate, population bound

use std::nets::conv_small

// Layers bind PyTorch state_dict tensors by name: conv1.weight, conv1.bias, ..., fc2.bias.
network net = conv_small() weights "../models/mnist/conv_small_pgd32.safetensors"

// uint8 images [n, 1, 28, 28] and labels; pixels are scaled by 1/255 to [0, 1].
dataset test = npz("../data/mnist/heldout.npz") | scale 1/255 | sample 100 seed 1

// One δ shared by every digit; ε in pixel units, swept.
perturbation up = universal linf eps [2/255, 4/255, 6/255, 8/255]

property robust = certify accuracy of net on test under up {
    bounds: crown,
    solver: microlp(time_limit: 60s),
    confidence: 0.9,
    compare: samplewise,
    attacks: [pgd],
}

use std::nets::conv_small
network net = conv_small()
dataset d = noise(shape: [1, 28, 28], count: 4, seed: 1)
perturbation p = universal linf eps 8/255
property r = certify classwise accuracy of net on d under p {
    bounds: beta-crown,
    solver: gurobi(time_limit: 60s),
    attacks: [pgd, fgsm],
}

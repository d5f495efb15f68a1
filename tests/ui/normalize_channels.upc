use std::data::cifar10_mean
block b() {
    input [1, 28, 28]
    normalize(cifar10_mean, [0.3])
}
network n = b()

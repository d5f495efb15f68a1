// A tiny MNIST-shaped network for the UI tests' weight fixtures.
block tiny() {
    input [1, 28, 28]
    conv1 = conv2d(1, 2, kernel: 7, stride: 7)
    relu
    flatten
    fc = linear(32, 3)
}

block b() {
    input [1, 28, 28]
    conv1 = conv2d(1, 16, kernel: 4, stride: 2)
    relu
    flatten
    fc1 = linear(800, 100)
}
network n = b()

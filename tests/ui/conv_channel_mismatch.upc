block b() {
    input [3, 32, 32]
    conv1 = conv2d(3, 16, kernel: 3, padding: 1)
    relu
    conv2 = conv2d(32, 32, kernel: 3)
}
network n = b()

block b() {
    input [1, 28, 28]
    conv2d(1, 4, kernel: 3)
}
network n = b()

block b() {
    input [1, 4, 4]
    conv2d(1, 2, kernel: 5)
}
network n = b()

block b() {
    input [784]
    conv2d(1, 4, kernel: 3)
}
network n = b()

block b() {
    input [8, 16, 16]
    c1 = conv2d(8, 16, kernel: 3, stride: 2, padding: 1)
    s = add from c1, input
}
network n = b()

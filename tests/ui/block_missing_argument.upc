block widen(cin, cout, stride) {
    conv2d(cin, cout, kernel: 3, stride: stride, padding: 1)
}
block net() {
    input [8, 8, 8]
    b1 = widen(8, 16)
    flatten
    fc = linear(256, 10)
}
network n = net()

block b() {
    input [1, 28, 28]
    flatten
    fc = linear(784, 10, bias: false)
}
network n = b()

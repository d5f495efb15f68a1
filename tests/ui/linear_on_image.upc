block b() {
    input [1, 28, 28]
    fc = linear(784, 10)
}
network n = b()

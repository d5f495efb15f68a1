block b() {
    input [1, 28, 28]
    flatten
    fc = linear(784, 100)
    fc = linear(100, 10)
}
network n = b()

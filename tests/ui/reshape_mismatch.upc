block b() {
    input [1, 28, 28]
    reshape([4, 14, 14])
    reshape([100])
}
network n = b()

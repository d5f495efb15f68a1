block b() {
    input [10]
    add
}
network n = b()

block huge() {
    input [100000, 100000, 100000]
    relu
}
block wide() {
    input [4]
    linear(4, 99999999)
}
network a = huge()
network b = wide()
dataset d = noise(shape: [1, 2, 2], count: 3, seed: 18446744073709551615) | sample 2 seed 18446744073709551616

const network = 3

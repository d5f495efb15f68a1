use "no_such_file.upc"

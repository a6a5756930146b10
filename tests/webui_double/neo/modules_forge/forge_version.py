version = "neo"

"""splitedge.simulations"""

"""splitedge.edge"""

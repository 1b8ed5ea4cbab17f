"""splitedge.models"""

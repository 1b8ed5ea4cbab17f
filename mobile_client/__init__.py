"""splitedge.mobile_client"""

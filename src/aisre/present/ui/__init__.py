"""present/ui"""

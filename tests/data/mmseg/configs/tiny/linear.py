_base_ = ['../segmenter/segmenter_vit-s_fcn_8xb1-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(embed_dims=64, num_layers=2, num_heads=2),
    decode_head=dict(in_channels=64, channels=64))

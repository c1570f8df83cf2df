_base_ = '../segmenter/segmenter_vit-t_mask_8xb1-160k_ade20k-512x512.py'
embed = 64
model = dict(
    backbone=dict(embed_dims=embed, num_layers=2, num_heads=2),
    decode_head=dict(in_channels=embed, channels=embed, embed_dims=embed, num_heads=2, num_layers=1))

namespace NativeVlm.Vision;

/// <summary>Pillow's resampling filters, numbered as <c>PIL.Image.Resampling</c> (and a preprocessor_config's "resample").</summary>
public enum Resample
{
    Nearest = 0,
    Lanczos = 1,
    Bilinear = 2,
    Bicubic = 3,
    Box = 4,
    Hamming = 5,
}

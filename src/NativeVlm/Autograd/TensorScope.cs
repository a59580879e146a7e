using NativeVlm.Tensors;

namespace NativeVlm.Autograd;

/// <summary>
/// Owns every tensor that ops create while it is the innermost scope on this thread, and
/// disposes them with itself. <see cref="Keep"/> hands a tensor to the enclosing scope (or to
/// the caller when there is none).
/// </summary>
public class TensorScope : IDisposable
{
    [ThreadStatic] private static TensorScope? _current;

    private readonly TensorScope? _outer;
    private readonly HashSet<Tensor> _owned = new(ReferenceEqualityComparer.Instance);
    private bool _disposed;

    public static TensorScope? Current => _current;

    public TensorScope()
    {
        _outer = _current;
        _current = this;
    }

    /// <summary>Takes ownership of a caller-owned tensor (e.g. input ids the backward still reads); returns it.</summary>
    public Tensor Own(Tensor tensor)
    {
        _owned.Add(tensor);
        return tensor;
    }

    /// <summary>Moves ownership of <paramref name="tensor"/> out of this scope; returns it.</summary>
    public Tensor Keep(Tensor tensor)
    {
        if (_owned.Remove(tensor))
        {
            _outer?.Own(tensor);
        }
        return tensor;
    }

    public virtual void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        if (_current != this)
        {
            throw new InvalidOperationException("scopes must be disposed innermost first");
        }
        _current = _outer;
        foreach (Tensor t in _owned)
        {
            t.Dispose();
        }
        _owned.Clear();
    }
}
